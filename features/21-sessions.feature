Feature: Refresh-token rotation with reuse detection, and logout
  Every refresh token works once: its exchange gives a new pair. A refresh token presented a
  second time means two parties hold it (its owner and a thief, in some order), so it is refused
  and every refresh token descended from the same login is revoked: neither keeps a renewable
  session. Logging out revokes every refresh token of the caller. Access tokens already issued
  are verified by every service on its own and simply expire (30 minutes).

  Background:
    Given the shop is running
    And a logged-in customer

  Scenario: A refresh token presented twice revokes the whole session it belongs to
    When I send a POST request to "/api/v1/auth/refresh" without a token with body:
      """
      {"refresh_token": "${REFRESH_TOKEN}"}
      """
    Then the response status is 200
    And I remember the response field "refresh_token" as "ROTATED_REFRESH_TOKEN"
    When I send a POST request to "/api/v1/auth/refresh" without a token with body:
      """
      {"refresh_token": "${REFRESH_TOKEN}"}
      """
    Then the response status is 401
    And the response header "WWW-Authenticate" is "Bearer"
    And the response field "detail" contains "already used"
    When I send a POST request to "/api/v1/auth/refresh" without a token with body:
      """
      {"refresh_token": "${ROTATED_REFRESH_TOKEN}"}
      """
    Then the response status is 401
    And the response field "detail" contains "revoked"
    When "customer@example.com" logs in
    And I send a POST request to "/api/v1/auth/refresh" without a token with body:
      """
      {"refresh_token": "${REFRESH_TOKEN}"}
      """
    Then the response status is 200

  Scenario: Logging out revokes every refresh token of the customer
    When I send a POST request to "/api/v1/auth/login" with form "username=customer@example.com&password=Password123"
    Then the response status is 200
    And I remember the response field "refresh_token" as "SECOND_SESSION_REFRESH_TOKEN"
    When I send a POST request to "/api/v1/auth/logout"
    Then the response status is 204
    When I send a POST request to "/api/v1/auth/refresh" without a token with body:
      """
      {"refresh_token": "${REFRESH_TOKEN}"}
      """
    Then the response status is 401
    When I send a POST request to "/api/v1/auth/refresh" without a token with body:
      """
      {"refresh_token": "${SECOND_SESSION_REFRESH_TOKEN}"}
      """
    Then the response status is 401
    When I send a POST request to "/api/v1/auth/logout" without a token
    Then the response status is 401
