Feature: An order retried with its Idempotency-Key is placed once
  A client that timed out, got a 503 or lost its connection cannot know whether its order was
  placed. Sent with an Idempotency-Key (the IETF httpapi draft's header), the same request can be
  sent again safely: the same key from the same customer with the same body answers with the order
  the first try placed, a different body with the same key is refused, and copies racing each
  other place one order. A request without a key is a new order every time.

  Background:
    Given the shop is running
    And a customer with a default address
    And the guide's catalog

  Scenario: A retry answers with the order its first try placed, and reserves nothing more
    When the customer orders 1 "Premium Smartphone" with the idempotency key "checkout-7f3a"
    And the customer sends that order of 1 "Premium Smartphone" again with the idempotency key "checkout-7f3a"
    Then the answer is that same order, replayed
    And the order is paid
    When the customer sends that order of 1 "Premium Smartphone" again with the idempotency key "checkout-7f3a"
    Then the answer is that same order, replayed
    And the response field "status" is "paid"
    When the customer tries to order 2 "Premium Smartphone" with the idempotency key "checkout-7f3a"
    Then the response status is 422
    And the response field "detail" contains "already used for a different order"
    When the customer orders 1 "Premium Smartphone"
    And the customer orders 1 "Premium Smartphone"
    Then the customer has 3 orders
    And the shop has settled
    And "Premium Smartphone" has 47 available and 3 reserved

  Scenario: Copies of one request racing each other place one order
    When 8 copies of an order for 2 "Wireless Noise-Cancelling Headphones" with the idempotency key "race-1" are sent at once
    Then the order is paid
    And the customer has 1 order
    And the shop has settled
    And "Wireless Noise-Cancelling Headphones" has 98 available and 2 reserved

  Scenario: A malformed Idempotency-Key is refused and places nothing
    When the customer tries to order 1 "Premium Smartphone" with the idempotency key "has a space"
    Then the response status is 400
    And the response field "detail" contains "Idempotency-Key"
    And the customer has 0 orders
