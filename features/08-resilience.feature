Feature: Resilience of the order flow (guide section 9 and the decisions)
  Orders are never lost: not when stock runs out, not when an event arrives twice, not when the
  broker or the inventory service is away, and not when many customers race for the last units.

  Background:
    Given the shop is running
    And I am a logged-in customer
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
    When I send a POST request to "/api/v1/products/" with body:
      """
      {
        "name": "Premium Smartphone",
        "description": "Latest model with high-end camera and long battery life",
        "category": "Electronics",
        "price": 899.99,
        "quantity": 50
      }
      """
    Then the response status is 201
    And I remember the response field "_id" as "PRODUCT_ID_1"
    When I send a POST request to "/api/v1/products/" with body:
      """
      {
        "name": "Wireless Noise-Cancelling Headphones",
        "description": "Premium headphones with active noise cancellation",
        "category": "Audio",
        "price": 249.99,
        "quantity": 100
      }
      """
    Then the response status is 201
    And I remember the response field "_id" as "PRODUCT_ID_2"
    When I send a POST request to "/api/v1/products/" with body:
      """
      {
        "name": "Smart Fitness Watch",
        "description": "Waterproof fitness tracker with heart rate monitoring",
        "category": "Wearables",
        "price": 179.99,
        "quantity": 75
      }
      """
    Then the response status is 201
    And I remember the response field "_id" as "PRODUCT_ID_3"
    # Inventory records are created asynchronously from product_created; wait for them so that
    # the orders below are judged against the stock the guide shows.
    And within 15 seconds the field "available_quantity" of GET "/api/v1/inventory/${PRODUCT_ID_1}" is "50"
    And within 15 seconds the field "available_quantity" of GET "/api/v1/inventory/${PRODUCT_ID_2}" is "100"
    And within 15 seconds the field "available_quantity" of GET "/api/v1/inventory/${PRODUCT_ID_3}" is "75"

  Scenario: An order for more than the stock is cancelled with a reason and the stock is unchanged
    When I send a POST request to "/api/v1/orders/" with body:
      """
      {
        "user_id": "${USER_ID}",
        "items": [
          {"product_id": "${PRODUCT_ID_2}", "quantity": 1, "price": 249.99},
          {"product_id": "${PRODUCT_ID_1}", "quantity": 51, "price": 899.99}
        ],
        "shipping_address": {"line1": "123 Example Street", "line2": "Apt 4B", "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country"}
      }
      """
    Then the response status is 201
    And the response field "status" is "pending"
    And I remember the response field "_id" as "ORDER_ID"
    Then within 15 seconds the field "status" of GET "/api/v1/orders/${ORDER_ID}" is "cancelled"
    And the response field "cancellation_reason" contains "${PRODUCT_ID_1}"
    And the response field "total_price" is "46149.48"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}"
    Then the response field "available_quantity" is "50"
    And the response field "reserved_quantity" is "0"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_2}"
    Then the response field "available_quantity" is "100"
    And the response field "reserved_quantity" is "0"

  Scenario: A duplicated order_created event changes nothing
    When I send a POST request to "/api/v1/orders/" with body:
      """
      {
        "user_id": "${USER_ID}",
        "items": [{"product_id": "${PRODUCT_ID_1}", "quantity": 1, "price": 899.99}],
        "shipping_address": {"line1": "123 Example Street", "line2": "Apt 4B", "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country"}
      }
      """
    Then the response status is 201
    And I remember the response field "_id" as "ORDER_ID"
    And within 15 seconds the field "status" of GET "/api/v1/orders/${ORDER_ID}" is "paid"
    When I publish to the queue "order_created":
      """
      {"order_id": "${ORDER_ID}", "user_id": "${USER_ID}", "items": [{"product_id": "${PRODUCT_ID_1}", "quantity": 1}]}
      """
    Then the queue "order_created" is eventually empty
    And the queue "inventory_reserved" is eventually empty
    And the queue "order_processed" is eventually empty
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}"
    Then the response field "available_quantity" is "49"
    And the response field "reserved_quantity" is "1"
    When I send a GET request to "/api/v1/orders/${ORDER_ID}"
    Then the response field "status" is "paid"

  Scenario: A broker outage while an order is placed loses nothing
    When the message broker becomes unreachable
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
    And I remember the response field "_id" as "ORDER_ID"
    When I send a GET request to "/api/v1/orders/${ORDER_ID}"
    Then the response field "status" is "pending"
    When the message broker is reachable again
    Then within 30 seconds the field "status" of GET "/api/v1/orders/${ORDER_ID}" is "paid"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}"
    Then the response field "available_quantity" is "49"
    And the response field "reserved_quantity" is "1"

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

  Scenario: A product created and ordered while the inventory service is down is reserved once it is back
    # Both the product's product_created and the order's order_created wait in their queues; when
    # inventory returns it may see the order before the product. It waits for the stock record
    # (retrying) instead of cancelling the order for an "unknown product".
    When the inventory service is stopped
    And I send a POST request to "/api/v1/products/" with body:
      """
      {"name": "Travel Adapter", "description": "Universal plug adapter", "category": "Accessories", "price": 24.99, "quantity": 20}
      """
    Then the response status is 201
    And I remember the response field "_id" as "NEW_PRODUCT_ID"
    When I send a POST request to "/api/v1/orders/" with body:
      """
      {
        "user_id": "${USER_ID}",
        "items": [{"product_id": "${NEW_PRODUCT_ID}", "quantity": 1, "price": 24.99}],
        "shipping_address": {"line1": "123 Example Street", "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country"}
      }
      """
    Then the response status is 201
    And I remember the response field "_id" as "EARLY_ORDER_ID"
    When the inventory service is started again
    Then within 30 seconds the field "status" of GET "/api/v1/orders/${EARLY_ORDER_ID}" is "paid"
    When I send a GET request to "/api/v1/inventory/${NEW_PRODUCT_ID}"
    Then the response field "available_quantity" is "19"
    And the response field "reserved_quantity" is "1"

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
    When the product service is started again
    And I send a GET request to "/api/v1/orders/"
    Then the response body is:
      """
      []
      """

  Scenario: A single order is timed from its POST to paid
    When 1 order of 1 unit of "${PRODUCT_ID_1}" at 899.99 are placed concurrently
    Then within 15 seconds every one of those orders is "paid"

  Scenario: 100 concurrent orders for a stock of 50 sell exactly 50
    When 100 orders of 1 unit of "${PRODUCT_ID_1}" at 899.99 are placed concurrently
    Then within 120 seconds 50 of those orders are "paid" and 50 are "cancelled"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}"
    Then the response field "available_quantity" is "0"
    And the response field "reserved_quantity" is "50"

  Scenario: A cancel that overtakes its reservation leaves the stock untouched
    When the inventory service is stopped
    And I send a POST request to "/api/v1/orders/" with body:
      """
      {
        "user_id": "${USER_ID}",
        "items": [{"product_id": "${PRODUCT_ID_1}", "quantity": 1, "price": 899.99}],
        "shipping_address": {"line1": "123 Example Street", "line2": "Apt 4B", "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country"}
      }
      """
    Then the response status is 201
    And I remember the response field "_id" as "ORDER_ID"
    When I send a DELETE request to "/api/v1/orders/${ORDER_ID}"
    Then the response status is 204
    When the inventory service is started again
    Then the queue "order_created" is eventually empty
    And the queue "inventory_release" is eventually empty
    And the queue "inventory_failed" is eventually empty
    And the queue "inventory_reserved" is eventually empty
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}"
    Then the response field "available_quantity" is "50"
    And the response field "reserved_quantity" is "0"
    When I send a GET request to "/api/v1/orders/${ORDER_ID}"
    Then the response field "status" is "cancelled"

  Scenario: An order placed just before the order service restarts is still paid
    When I send a POST request to "/api/v1/orders/" with body:
      """
      {
        "user_id": "${USER_ID}",
        "items": [{"product_id": "${PRODUCT_ID_1}", "quantity": 1, "price": 899.99}],
        "shipping_address": {"line1": "123 Example Street", "line2": "Apt 4B", "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country"}
      }
      """
    Then the response status is 201
    And I remember the response field "_id" as "ORDER_ID"
    When the order service is stopped
    And the order service is started again
    Then within 15 seconds the field "status" of GET "/api/v1/orders/${ORDER_ID}" is "paid"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}"
    Then the response field "available_quantity" is "49"
    And the response field "reserved_quantity" is "1"
