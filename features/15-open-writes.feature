@staff
Feature: Writes open to signed-in users (the default, REQUIRE_STAFF_ROLE=false)
  The development setup the testing guide walks through: any signed-in user may write the
  catalog and the stock, and move their own orders through fulfilment. Ownership still holds:
  nobody but staff touches another customer's order (another customer's attempts are in feature
  06), and nobody reaches the payment states by request.

  Background:
    Given the shop is running
    And a customer with a default address
    And the guide's catalog

  Scenario: A customer writes the catalog and the stock, and ships their own order
    When the customer tries to add 5 "Desk Lamp" at 39.90 to the catalog
    Then the response status is 201
    And "Desk Lamp" has 5 available and 0 reserved
    When the customer tries to add 10 units of "Desk Lamp" to the stock
    Then the response status is 200
    And "Desk Lamp" has 15 available and 0 reserved
    When the customer orders 1 "Desk Lamp"
    Then the order is paid
    When the customer tries to move the order to shipped
    Then the response status is 200
    And the order is shipped

  Scenario: Staff act on any customer's order here too
    Given a member of staff
    When "customer@example.com" logs in
    And the customer orders 1 "Premium Smartphone"
    Then the order is paid
    When staff tries to move the order to shipped
    Then the response status is 200
    And the order is shipped
    When I send a GET request to "/api/v1/orders/${ORDER_ID_1}" with the token "${STAFF_TOKEN}"
    Then the response status is 200
    And the response field "status" is "shipped"
