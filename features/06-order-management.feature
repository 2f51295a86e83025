Feature: Viewing and managing orders (guide section 6)
  A customer reads their orders, moves them along the status machine and cancels them; a
  cancel gives the reserved stock back. Nobody sees or changes another customer's orders.

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
    When I send a POST request to "/api/v1/orders/" with body:
      """
      {
        "user_id": "${USER_ID}",
        "items": [
          {
            "product_id": "${PRODUCT_ID_1}",
            "quantity": 1,
            "price": 899.99
          }
        ],
        "shipping_address": {
          "line1": "123 Example Street",
          "line2": "Apt 4B",
          "city": "Example City",
          "state": "EX",
          "postal_code": "12345",
          "country": "Example Country"
        }
      }
      """
    Then the response status is 201
    And I remember the response field "_id" as "ORDER_ID_1"
    And within 15 seconds the field "status" of GET "/api/v1/orders/${ORDER_ID_1}" is "paid"
    When I send a POST request to "/api/v1/orders/" with body:
      """
      {
        "user_id": "${USER_ID}",
        "items": [
          {
            "product_id": "${PRODUCT_ID_2}",
            "quantity": 1,
            "price": 249.99
          },
          {
            "product_id": "${PRODUCT_ID_3}",
            "quantity": 2,
            "price": 179.99
          }
        ],
        "shipping_address": {
          "line1": "123 Example Street",
          "line2": "Apt 4B",
          "city": "Example City",
          "state": "EX",
          "postal_code": "12345",
          "country": "Example Country"
        }
      }
      """
    Then the response status is 201
    And I remember the response field "_id" as "ORDER_ID_2"
    And within 15 seconds the field "status" of GET "/api/v1/orders/${ORDER_ID_2}" is "paid"

  Scenario: Section 6.1 and 6.2 - order details and the customer's orders, newest first
    When I send a GET request to "/api/v1/orders/${ORDER_ID_1}"
    Then the response status is 200
    And the response body matches the snapshot "06_order_details_paid"
    When I send a GET request to "/api/v1/orders/"
    Then the response status is 200
    And the response is a list of 2 items
    And the response field "0._id" is "${ORDER_ID_2}"
    And the response field "1._id" is "${ORDER_ID_1}"
    And the response body matches the snapshot "06_orders_of_the_customer"

  Scenario: Section 6.3 and 6.5 - shipping an order keeps its reservation
    When I send a PUT request to "/api/v1/orders/${ORDER_ID_1}/status" with body:
      """
      {
        "status": "shipped"
      }
      """
    Then the response status is 200
    And the response field "status" is "shipped"
    And the response body matches the snapshot "06_order_shipped"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}"
    Then the response status is 200
    And the response field "available_quantity" is "49"
    And the response field "reserved_quantity" is "1"
    And the response body matches the snapshot "06_inventory_after_shipping"

  Scenario: Section 6.4 and 6.5 - cancelling an order releases its stock
    When I send a DELETE request to "/api/v1/orders/${ORDER_ID_2}"
    Then the response status is 204
    And the response body is empty
    When I send a GET request to "/api/v1/orders/${ORDER_ID_2}"
    Then the response status is 200
    And the response field "status" is "cancelled"
    And the response body matches the snapshot "06_order_cancelled"
    Then within 15 seconds the field "available_quantity" of GET "/api/v1/inventory/${PRODUCT_ID_2}" is "100"
    And the response field "reserved_quantity" is "0"
    And the response body matches the snapshot "06_inventory_released_after_cancel"
    Then within 15 seconds the field "available_quantity" of GET "/api/v1/inventory/${PRODUCT_ID_3}" is "75"
    And the response field "reserved_quantity" is "0"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}"
    Then the response field "available_quantity" is "49"
    And the response field "reserved_quantity" is "1"

  Scenario: The status list filter and paging
    When I send a DELETE request to "/api/v1/orders/${ORDER_ID_2}"
    Then the response status is 204
    When I send a GET request to "/api/v1/orders/?status=cancelled"
    Then the response is a list of 1 item
    And the response field "0._id" is "${ORDER_ID_2}"
    When I send a GET request to "/api/v1/orders/?status=paid"
    Then the response is a list of 1 item
    And the response field "0._id" is "${ORDER_ID_1}"
    When I send a GET request to "/api/v1/orders/?skip=1&limit=1"
    Then the response is a list of 1 item
    And the response field "0._id" is "${ORDER_ID_1}"
    When I send a GET request to "/api/v1/orders/?status=lost"
    Then the response status is 422
    When I send a GET request to "/api/v1/orders/?limit=0"
    Then the response status is 422

  Scenario: A transition the status machine does not allow is refused with the allowed ones
    When I send a PUT request to "/api/v1/orders/${ORDER_ID_1}/status" with body:
      """
      {"status": "delivered"}
      """
    Then the response status is 400
    And the response body is:
      """
      {"detail": "Cannot change order status from paid to delivered. Allowed transitions from paid: shipped, cancelled, refunded"}
      """
    When I send a PUT request to "/api/v1/orders/${ORDER_ID_1}/status" with body:
      """
      {"status": "teleported"}
      """
    Then the response status is 422
    When I send a GET request to "/api/v1/orders/${ORDER_ID_1}"
    Then the response field "status" is "paid"

  Scenario: A shipped order cannot be cancelled, and a delivered one can still be refunded
    When I send a PUT request to "/api/v1/orders/${ORDER_ID_1}/status" with body:
      """
      {"status": "shipped"}
      """
    Then the response status is 200
    When I send a DELETE request to "/api/v1/orders/${ORDER_ID_1}"
    Then the response status is 400
    And the response body is:
      """
      {"detail": "Order cannot be cancelled: it is shipped"}
      """
    When I send a PUT request to "/api/v1/orders/${ORDER_ID_1}/status" with body:
      """
      {"status": "delivered"}
      """
    Then the response status is 200
    When I send a PUT request to "/api/v1/orders/${ORDER_ID_1}/status" with body:
      """
      {"status": "refunded"}
      """
    Then the response status is 200
    And the response field "status" is "refunded"
    # A refund after shipping is a refund of money: the goods are with the customer, so the
    # reservation stays as it is.
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}"
    Then the response field "available_quantity" is "49"
    And the response field "reserved_quantity" is "1"
    When I send a PUT request to "/api/v1/orders/${ORDER_ID_1}/status" with body:
      """
      {"status": "cancelled"}
      """
    Then the response status is 400
    And the response body is:
      """
      {"detail": "Cannot change order status from refunded to cancelled. Allowed transitions from refunded: none"}
      """

  Scenario: Refunding a paid order that never shipped gives its stock back
    When I send a PUT request to "/api/v1/orders/${ORDER_ID_2}/status" with body:
      """
      {"status": "refunded"}
      """
    Then the response status is 200
    And the response field "status" is "refunded"
    Then within 15 seconds the field "available_quantity" of GET "/api/v1/inventory/${PRODUCT_ID_2}" is "100"
    And the response field "reserved_quantity" is "0"

  Scenario: Another customer's order is not found and cannot be changed
    Given I am logged in as another customer "other@example.com"
    When I send a GET request to "/api/v1/orders/${ORDER_ID_1}"
    Then the response status is 404
    When I send a PUT request to "/api/v1/orders/${ORDER_ID_1}/status" with body:
      """
      {"status": "shipped"}
      """
    Then the response status is 404
    When I send a DELETE request to "/api/v1/orders/${ORDER_ID_2}"
    Then the response status is 404
    When I send a GET request to "/api/v1/orders/"
    Then the response body is:
      """
      []
      """
    Given I am logged in as "customer@example.com" with password "Password123"
    When I send a GET request to "/api/v1/orders/${ORDER_ID_1}"
    Then the response field "status" is "paid"
    When I send a GET request to "/api/v1/orders/${ORDER_ID_2}"
    Then the response field "status" is "paid"

  Scenario: An id that is not an order id is not found
    When I send a GET request to "/api/v1/orders/not-an-object-id"
    Then the response status is 404
    When I send a GET request to "/api/v1/orders/000000000000000000000000"
    Then the response status is 404
