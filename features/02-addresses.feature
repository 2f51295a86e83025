Feature: Adding user addresses (guide section 2)
  A logged-in customer keeps shipping addresses; only their own.

  Background:
    Given the shop is running
    And a logged-in customer

  Scenario: Section 2 - the customer adds a default shipping address
    When I send a POST request to "/api/v1/users/me/addresses" with body:
      """
      {
        "line1": "123 Example Street",
        "line2": "Apt 4B",
        "city": "Example City",
        "state": "EX",
        "postal_code": "12345",
        "country": "Example Country",
        "is_default": true
      }
      """
    Then the response status is 201
    And the response body matches the snapshot "address_created"
    When I send a GET request to "/api/v1/users/me"
    Then the response status is 200
    And the response body matches the snapshot "users_me_with_address"

  Scenario: A new default address replaces the old default
    When I send a POST request to "/api/v1/users/me/addresses" with body:
      """
      {"line1": "123 Example Street", "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country", "is_default": true}
      """
    Then the response status is 201
    When I send a POST request to "/api/v1/users/me/addresses" with body:
      """
      {"line1": "9 Other Road", "city": "Other City", "state": "OT", "postal_code": "54321", "country": "Example Country", "is_default": true}
      """
    Then the response status is 201
    When I send a GET request to "/api/v1/users/me/addresses"
    Then the response status is 200
    And the response is a list of 2 items
    And the only default address listed is "9 Other Road"

  Scenario: Addresses can be changed and removed
    When I send a POST request to "/api/v1/users/me/addresses" with body:
      """
      {"line1": "123 Example Street", "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country", "is_default": false}
      """
    Then the response status is 201
    And I remember the response field "id" as "ADDRESS_ID"
    When I send a PUT request to "/api/v1/users/me/addresses/${ADDRESS_ID}" with body:
      """
      {"line1": "124 Example Street", "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country", "is_default": true}
      """
    Then the response status is 200
    And the response field "line1" is "124 Example Street"
    And the response field "is_default" is "true"
    When I send a DELETE request to "/api/v1/users/me/addresses/${ADDRESS_ID}"
    Then the response status is 204
    When I send a GET request to "/api/v1/users/me/addresses"
    Then the response body is:
      """
      []
      """

  Scenario: Another customer cannot touch my address
    When I send a POST request to "/api/v1/users/me/addresses" with body:
      """
      {"line1": "123 Example Street", "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country", "is_default": true}
      """
    Then the response status is 201
    And I remember the response field "id" as "ADDRESS_ID"
    Given another customer "other@example.com"
    When "other@example.com" logs in
    And I send a PUT request to "/api/v1/users/me/addresses/${ADDRESS_ID}" with body:
      """
      {"line1": "1 Stolen Road", "city": "Elsewhere", "state": "EL", "postal_code": "99999", "country": "Example Country", "is_default": true}
      """
    Then the response status is 404
    When I send a DELETE request to "/api/v1/users/me/addresses/${ADDRESS_ID}"
    Then the response status is 404
    When I send a GET request to "/api/v1/users/me/addresses"
    Then the response body is:
      """
      []
      """
    When "customer@example.com" logs in
    And I send a GET request to "/api/v1/users/me/addresses"
    Then the response status is 200
    And the response body is:
      """
      [{"id": ${ADDRESS_ID}, "line1": "123 Example Street", "line2": null, "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country", "is_default": true}]
      """

  Scenario: An incomplete address is refused and nothing is stored
    When I send a POST request to "/api/v1/users/me/addresses" with body:
      """
      {"line1": "", "city": "Example City", "country": "Example Country"}
      """
    Then the response status is 422
    When I send a GET request to "/api/v1/users/me/addresses"
    Then the response body is:
      """
      []
      """

  Scenario: Addresses need a token
    When I send a POST request to "/api/v1/users/me/addresses" without a token with body:
      """
      {"line1": "123 Example Street", "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country"}
      """
    Then the response status is 401
    And the response header "WWW-Authenticate" is "Bearer"
