Feature: Signing-key rotation without logging anyone out
  The user service signs with one key at a time. Its key set (JWKS) publishes the next key
  before that key signs, and the previous ones until every token they signed has expired, so an
  operator can rotate keys in the middle of everyone's session. A key withdrawn on purpose (one in
  the wrong hands) is refused by every service within a bound: the user service's reload of its
  key directory plus the verifiers' refresh of the key set.

  Here the user service reads its key directory every second and the other services fetch the
  key set every 2 s (JWT_KEY_RELOAD_SECONDS and JWKS_REFRESH_SECONDS, 10 and 60 by default); the
  operator's commands are `user-service keys rotate --activate-in SECONDS` and
  `user-service keys remove KID`, run on the scenario's directory.

  Background:
    Given the shop is running with a key directory
    And a logged-in customer

  Scenario: A rotation in the middle of a session logs nobody out
    When an operator rotates the signing key, the new key signing in 3 seconds
    Then within 5 seconds the key set lists exactly the keys "${OLD_KEY_ID}, ${NEW_KEY_ID}"
    And the token "${TOKEN_BEFORE_ROTATION}" is accepted by every service
    When a login of "customer@example.com" is signed by the key "${NEW_KEY_ID}" within 15 seconds
    Then the token "${TOKEN}" is accepted by every service
    # Long enough for every verifier to have fetched the key set again, twice.
    When 5 seconds pass
    Then the token "${TOKEN_BEFORE_ROTATION}" is accepted by every service
    And the key set lists exactly the keys "${OLD_KEY_ID}, ${NEW_KEY_ID}"
    When I send a POST request to "/api/v1/auth/refresh" without a token with body:
      """
      {"refresh_token": "${REFRESH_TOKEN_BEFORE_ROTATION}"}
      """
    Then the response status is 200
    And the response field "access_token" is a token signed by the key "${NEW_KEY_ID}"

  Scenario: A token signed by a removed key is refused by every service within the bound
    When an operator rotates the signing key, the new key signing in 2 seconds
    And a login of "customer@example.com" is signed by the key "${NEW_KEY_ID}" within 15 seconds
    And an operator removes the key "${OLD_KEY_ID}"
    # The bound here: a 1 s reload, a 2 s refresh and one fetch; 10 s leaves room for a slow machine.
    Then within 10 seconds the token "${TOKEN_BEFORE_ROTATION}" is refused by every service
    And the key set lists exactly the keys "${NEW_KEY_ID}"
    And the token "${TOKEN}" is accepted by every service
    When I send a POST request to "/api/v1/auth/refresh" without a token with body:
      """
      {"refresh_token": "${REFRESH_TOKEN_BEFORE_ROTATION}"}
      """
    Then the response status is 401
