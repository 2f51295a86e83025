Feature: User registration and authentication (guide section 1)
  A customer registers, logs in with the OAuth2 password form and proves who they are with the
  RS256 access token, every request going through the nginx gateway.

  Background:
    Given the shop is running

  Scenario: Step 1.1 - a new customer registers
    When I send a POST request to "/api/v1/auth/register" without a token with body:
      """
      {
        "email": "customer@example.com",
        "password": "Password123",
        "first_name": "Example",
        "last_name": "Customer",
        "phone": "555-123-4567"
      }
      """
    Then the response status is 201
    And the response body matches the snapshot "register_customer"

  Scenario: Step 1.2 - the customer logs in with the password form and gets RS256 tokens
    Given a customer "customer@example.com" registered with password "Password123"
    When I send a POST request to "/api/v1/auth/login" with form "username=customer@example.com&password=Password123"
    Then the response status is 200
    And the response body matches the snapshot "login_tokens"
    And the response field "token_type" is "bearer"

  Scenario: Step 1.3 - the access token identifies the customer
    Given a logged-in customer
    When I send a GET request to "/api/v1/users/me"
    Then the response status is 200
    And the response body matches the snapshot "users_me_without_addresses"

  Scenario: Emails are unique, whatever their case
    Given a customer "customer@example.com" registered with password "Password123"
    When I send a POST request to "/api/v1/auth/register" without a token with body:
      """
      {"email": "Customer@Example.COM", "password": "Password123", "first_name": "Second", "last_name": "Customer"}
      """
    Then the response status is 409
    And the response body is:
      """
      {"detail": "Email already registered"}
      """

  Scenario: A wrong password is refused without saying which part was wrong
    Given a customer "customer@example.com" registered with password "Password123"
    When I send a POST request to "/api/v1/auth/login" with form "username=customer@example.com&password=WrongPassword1"
    Then the response status is 401
    And the response header "WWW-Authenticate" is "Bearer"
    And the response body is:
      """
      {"detail": "Incorrect email or password"}
      """
    When I send a POST request to "/api/v1/auth/login" with form "username=nobody@example.com&password=Password123"
    Then the response status is 401
    And the response body is:
      """
      {"detail": "Incorrect email or password"}
      """

  Scenario Outline: Invalid registrations are refused with reasons and create nobody
    When I send a POST request to "/api/v1/auth/register" without a token with body:
      """
      <body>
      """
    Then the response status is <status>
    And the refusal names "<reason>"
    And nobody can log in as "<email>" with password "<password>"

    Examples:
      | body                                                                                                      | status | reason     | email                | password    |
      | {"email": "not-an-email", "password": "Password123", "first_name": "Example", "last_name": "Customer"}    | 422    | email      | not-an-email         | Password123 |
      | {"email": "customer@example.com", "password": "short1", "first_name": "Example", "last_name": "Customer"}  | 422    | password   | customer@example.com | short1      |
      | {"email": "customer@example.com", "password": "Password123", "first_name": "", "last_name": "Customer"}    | 422    | first_name | customer@example.com | Password123 |
      | {"email": "customer@example.com", "password": 12345678, "first_name": "Example", "last_name": "Customer"}  | 422    | password   | customer@example.com | 12345678    |
      | {"email": "customer@example.com", "password": "Password123"                                                | 400    | JSON       | customer@example.com | Password123 |

  Scenario: A request without a token is refused
    When I send a GET request to "/api/v1/users/me" without a token
    Then the response status is 401
    And the response header "WWW-Authenticate" is "Bearer"
    And the response field "detail" is "Not authenticated"

  Scenario: A forged token is refused
    Given a logged-in customer
    When I send a GET request to "/api/v1/users/me" with the token "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIiwidHlwZSI6ImFjY2VzcyIsImlzcyI6InVzZXItc2VydmljZSIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjo0MTAwMDAwMDAwLCJqdGkiOiJ4In0."
    Then the response status is 401
    And the response header "WWW-Authenticate" is "Bearer"
    When I send a GET request to "/api/v1/users/me" with the Authorization header "Basic Y3VzdG9tZXI6UGFzc3dvcmQxMjM="
    Then the response status is 401

  Scenario: The refresh token buys a new pair, but is no access token itself
    Given a logged-in customer
    When I send a GET request to "/api/v1/users/me" with the token "${REFRESH_TOKEN}"
    Then the response status is 401
    When I send a POST request to "/api/v1/auth/refresh" without a token with body:
      """
      {"refresh_token": "${REFRESH_TOKEN}"}
      """
    Then the response status is 200
    And the response body matches the snapshot "login_tokens"
    And I remember the response field "access_token" as "NEW_TOKEN"
    When I send a GET request to "/api/v1/users/me" with the token "${NEW_TOKEN}"
    Then the response status is 200
    When I send a POST request to "/api/v1/auth/refresh" without a token with body:
      """
      {"refresh_token": "${TOKEN}"}
      """
    Then the response status is 401

  Scenario: The public key set that every service verifies tokens with is published
    When I send a GET request to "/api/v1/auth/jwks" without a token
    Then the response status is 200
    And the response field "keys" holds an item with:
      | kty | RSA   |
      | alg | RS256 |
      | use | sig   |
      | e   | AQAB  |

  Scenario: The customer changes their profile, but not their email through it
    Given a logged-in customer
    When I send a PUT request to "/api/v1/users/me" with body:
      """
      {"first_name": "Changed", "phone": null}
      """
    Then the response status is 200
    And the response field "first_name" is "Changed"
    And the response field "last_name" is "Customer"
    And the response field "phone" is "null"
    And the response field "email" is "customer@example.com"
    When I send a PUT request to "/api/v1/users/me" with body:
      """
      {"email": "someone-else@example.com"}
      """
    Then the response status is 422
    When I send a PUT request to "/api/v1/users/me" with body:
      """
      {"last_name": "   "}
      """
    Then the response status is 422
    And the refusal names "last_name"
    When I send a GET request to "/api/v1/users/me"
    Then the response field "first_name" is "Changed"
    And the response field "last_name" is "Customer"

  Scenario: The customer logs in with their email in another letter case
    Given a customer "customer@example.com" registered with password "Password123"
    When I send a POST request to "/api/v1/auth/login" with form "username=CUSTOMER@Example.com&password=Password123"
    Then the response status is 200
