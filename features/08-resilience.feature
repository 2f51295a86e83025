Feature: Resilience of the order flow (guide section 9 and the decisions)
  Orders are never lost: not when stock runs out, not when an event arrives twice, not when the
  broker or the inventory service is away. (Many customers racing for the last units, across two
  replicas of the order and inventory services, is in feature 11.)

  Background:
    Given the shop is running
    And a customer with a default address
    And the guide's catalog

  @stock @order-status
  Scenario: An order for more than the stock is cancelled with a reason and the stock is unchanged
    When the customer orders 1 "Wireless Noise-Cancelling Headphones" and 51 "Premium Smartphone"
    Then the order is cancelled for lack of "Premium Smartphone"
    # The cancellation is the inventory's answer to the order, so the stock is read after it.
    And "Premium Smartphone" has 50 available and 0 reserved
    And "Wireless Noise-Cancelling Headphones" has 100 available and 0 reserved

  @stock @delivery
  Scenario: A duplicated order_created event changes nothing
    When the customer orders 1 "Premium Smartphone"
    Then the order is paid
    When I publish to the queue "order_created":
      """
      {"order_id": "${ORDER_ID_1}", "user_id": "${USER_ID}", "items": [{"product_id": "${PRODUCT_ID_1}", "quantity": 1}]}
      """
    # Settled: the duplicate has been taken from the queue and handled, and whatever it caused
    # has been handled too, before the stock and the order are read.
    Then the shop has settled
    And "Premium Smartphone" has 49 available and 1 reserved
    And the order is paid

  @outbox
  Scenario: A broker outage while an order is placed loses nothing
    When the message broker becomes unreachable
    When the customer orders 1 "Premium Smartphone"
    # The order is stored with its event; the event cannot leave while the broker is away.
    Then 1 event waits in the order service's outbox
    And the order is pending
    When the message broker is reachable again
    Then the order is paid
    And "Premium Smartphone" has 49 available and 1 reserved

  @stock @delivery
  Scenario: Section 9.1 - an order placed while the inventory service is down is paid once it is back
    When the inventory service is stopped
    When I send a POST request to "/api/v1/orders/" with body:
      """
      {
        "user_id": "${USER_ID}",
        "items": [{"product_id": "${PRODUCT_ID_1}", "quantity": 1, "price": 899.99}],
        "shipping_address": {"line1": "123 Example Street", "line2": "Apt 4B", "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country"}
      }
      """
    Then the response status is 201
    And the response field "status" is "pending"
    And I remember the response field "_id" as "RESILIENCE_ORDER_ID"
    When I send a GET request to "/api/v1/orders/${RESILIENCE_ORDER_ID}"
    Then the response field "status" is "pending"
    When the inventory service is started again
    Then within 30 seconds the field "status" of GET "/api/v1/orders/${RESILIENCE_ORDER_ID}" is "paid"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}"
    Then the response field "available_quantity" is "49"
    And the response field "reserved_quantity" is "1"

  @stock @delivery
  Scenario: A product created and ordered while the inventory service is down is reserved once it is back
    # Both the product's product_created and the order's order_created wait in their queues; when
    # inventory returns it may see the order before the product. It waits for the stock record
    # (retrying) instead of cancelling the order for an "unknown product".
    When the inventory service is stopped
    And the customer adds 20 "Travel Adapter" at 24.99 to the catalog
    And the customer orders 1 "Travel Adapter"
    When the inventory service is started again
    Then the order is paid
    And "Travel Adapter" has 19 available and 1 reserved

  @order-status
  Scenario: A product service outage refuses new orders with a 503 and stores nothing
    When the product service is stopped
    When I send a POST request to "/api/v1/orders/" with body:
      """
      {
        "user_id": "${USER_ID}",
        "items": [{"product_id": "${PRODUCT_ID_1}", "quantity": 1, "price": 899.99}],
        "shipping_address": {"line1": "123 Example Street", "line2": "Apt 4B", "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country"}
      }
      """
    Then the response status is 503
    And the response body is:
      """
      {"detail": "The product catalog is unavailable; try again shortly"}
      """
    When the product service is started again
    Then the customer has 0 orders
    And the shop has settled
    And "Premium Smartphone" has 50 available and 0 reserved

  # Serial: it measures time, which other scenarios running beside it would distort.
  @serial
  Scenario: A single order is timed from its POST to paid
    When 1 order for 1 "Premium Smartphone" are placed at once
    Then within 15 seconds every one of those orders is paid

  @stock
  Scenario: A cancel that overtakes its reservation leaves the stock untouched
    When the inventory service is stopped
    And the customer orders 1 "Premium Smartphone"
    And the customer cancels the order
    # Both the order and its cancellation wait for inventory, in that order.
    Then the queue "order_created" holds 1 message
    And the queue "inventory_release" holds 1 message
    When the inventory service is started again
    Then the shop has settled
    And "Premium Smartphone" has 50 available and 0 reserved
    And the order is cancelled

  @delivery
  Scenario: An order whose reservation arrives while the order service is down is paid once it is back
    # Inventory is held back so that the order is surely not paid before the order service stops.
    When the inventory service is stopped
    And the customer orders 1 "Premium Smartphone"
    Then the queue "order_created" holds 1 message
    When the order service is stopped
    And the inventory service is started again
    # The reservation's answer waits for the order service, which is away.
    Then the queue "inventory_reserved" holds 1 message
    When the order service is started again
    Then the order is paid
    And "Premium Smartphone" has 49 available and 1 reserved
