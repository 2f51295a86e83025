@staff
Feature: Staff-only writes (REQUIRE_STAFF_ROLE=true)
  A customer places, reads and cancels their own orders. The catalog, the stock and the
  fulfilment of orders (shipped, delivered, refunded) are staff work: with the switch on, only
  a token with the staff role (given by an operator, `user-service staff grant EMAIL`) may do
  them, and staff may do them on any customer's order. A refused write is a 403 and changes
  nothing. The stock history names other customers' orders: staff only too.

  Background:
    Given the shop is running with staff-only writes
    And a member of staff
    And the guide's catalog
    And a customer with a default address

  Scenario: A customer cannot change the catalog or the stock
    When the customer tries to add 5 "Desk Lamp" at 39.90 to the catalog
    Then the response status is 403
    And the response field "detail" contains "reserved to staff"
    When the customer tries to change the price of "Premium Smartphone" to 1.00
    Then the response status is 403
    When the customer tries to delete "Premium Smartphone" from the catalog
    Then the response status is 403
    When the customer tries to add 10 units of "Premium Smartphone" to the stock
    Then the response status is 403
    And the shop has settled
    And "Premium Smartphone" costs 899.99
    And "Premium Smartphone" has 50 available and 0 reserved
    And the stock history of "Premium Smartphone" is "product_created"
    When I send a GET request to "/api/v1/products/?name=Desk%20Lamp"
    Then the response is a list of 0 items

  Scenario: Staff is whom an operator makes staff, from their next login until it is revoked
    Given another customer "clerk@shop.example"
    When "clerk@shop.example" logs in
    And the customer tries to add 10 units of "Premium Smartphone" to the stock
    Then the response status is 403
    When an operator grants the staff role to "clerk@shop.example"
    And "clerk@shop.example" logs in
    And the customer tries to add 10 units of "Premium Smartphone" to the stock
    Then the response status is 200
    When an operator revokes the staff role of "clerk@shop.example"
    And "clerk@shop.example" logs in
    And the customer tries to add 10 units of "Premium Smartphone" to the stock
    Then the response status is 403
    And "Premium Smartphone" has 60 available and 0 reserved

  Scenario: A customer cannot read the stock history, which names other customers' orders
    When the customer orders 1 "Premium Smartphone"
    Then the order is paid
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}/history"
    Then the response status is 403
    And the response field "detail" contains "reserved to staff"
    And the stock history of "Premium Smartphone" is "product_created, order_reserved"

  Scenario: Staff change the catalog and the stock
    When staff tries to add 5 "Desk Lamp" at 39.90 to the catalog
    Then the response status is 201
    And "Desk Lamp" has 5 available and 0 reserved
    When staff tries to change the price of "Premium Smartphone" to 849.99
    Then the response status is 200
    And "Premium Smartphone" costs 849.99
    When staff tries to add 10 units of "Premium Smartphone" to the stock
    Then the response status is 200
    And "Premium Smartphone" has 60 available and 0 reserved

  Scenario: A customer cannot ship their own order, and may still cancel it
    When the customer orders 1 "Premium Smartphone"
    Then the order is paid
    When the customer tries to move the order to shipped
    Then the response status is 403
    And the response field "detail" contains "Moving an order to shipped is reserved to staff"
    When the customer tries to move the order to refunded
    Then the response status is 403
    And the order is paid
    When the customer cancels the order
    Then the order is cancelled
    And "Premium Smartphone" has 50 available and 0 reserved

  Scenario: Staff ship and deliver a customer's order, and refund another before it ships
    When the customer orders 1 "Premium Smartphone"
    Then the order is paid
    When staff tries to move the order to shipped
    Then the response status is 200
    And the response field "status" is "shipped"
    When staff tries to move the order to delivered
    Then the response status is 200
    And the order is delivered
    And "Premium Smartphone" has 49 available and 1 reserved
    When the customer orders 2 "Smart Fitness Watch"
    Then the order is paid
    When staff tries to move the order to refunded
    Then the response status is 200
    And the order is refunded
    And "Smart Fitness Watch" has 75 available and 0 reserved
