Feature: Viewing and managing orders (guide section 6)
  A customer reads their orders, moves them along the status machine and cancels them; a
  cancel gives the reserved stock back. Nobody sees or changes another customer's orders.

  Background:
    Given the shop is running
    And a customer with a default address
    And the guide's catalog
    And the customer has a paid order of 1 "Premium Smartphone"
    And the customer has a paid order of 1 "Wireless Noise-Cancelling Headphones" and 2 "Smart Fitness Watch"

  @order-status
  Scenario: Section 6.1 and 6.2 - order details and the customer's orders, newest first
    When I send a GET request to "/api/v1/orders/${ORDER_ID_1}"
    Then the response status is 200
    And the response body matches the snapshot "06_order_details_paid"
    When I send a GET request to "/api/v1/orders/"
    Then the response status is 200
    And the response lists order 2 then order 1, newest first
    And the response body matches the snapshot "06_orders_of_the_customer"

  @stock @order-status
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
    # Shipping must not release the reservation: had it published a release, it is handled by now.
    And the shop has settled
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}"
    Then the response status is 200
    And the response field "available_quantity" is "49"
    And the response field "reserved_quantity" is "1"
    And the response body matches the snapshot "06_inventory_after_shipping"

  @stock @order-status
  Scenario: Section 6.4 and 6.5 - cancelling an order releases its stock
    When I send a DELETE request to "/api/v1/orders/${ORDER_ID_2}"
    Then the response status is 204
    And the response body is empty
    When I send a GET request to "/api/v1/orders/${ORDER_ID_2}"
    Then the response status is 200
    And the response field "status" is "cancelled"
    And the response body matches the snapshot "06_order_cancelled"
    And "Wireless Noise-Cancelling Headphones" has 100 available and 0 reserved
    And the response body matches the snapshot "06_inventory_released_after_cancel"
    And "Smart Fitness Watch" has 75 available and 0 reserved
    # Both products are released by the one release event of order 2, so order 1's reservation
    # is read after that event has been handled.
    And "Premium Smartphone" has 49 available and 1 reserved

  @order-status
  Scenario: The status list filter and paging
    When the customer cancels order 2
    And I send a GET request to "/api/v1/orders/?status=cancelled"
    Then the response lists only order 2
    When I send a GET request to "/api/v1/orders/?status=paid"
    Then the response lists only order 1
    # Orders are listed newest first, so a page that skips one starts at the older order.
    When I send a GET request to "/api/v1/orders/?skip=1&limit=1"
    Then the response lists only order 1
    When I send a GET request to "/api/v1/orders/?status=lost"
    Then the response status is 422
    When I send a GET request to "/api/v1/orders/?limit=0"
    Then the response status is 422

  @order-status
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

  @stock @order-status
  Scenario: A customer cannot move an order into the payment states
    # Paid comes only from the payment flow: a pending order set to processing and then paid by
    # its customer would skip the stock check.
    When the inventory service is stopped
    And the customer orders 1 "Smart Fitness Watch"
    And I send a PUT request to "/api/v1/orders/${ORDER_ID_3}/status" with body:
      """
      {"status": "processing"}
      """
    Then the response status is 400
    And the response body is:
      """
      {"detail": "Cannot change order status from pending to processing. Allowed transitions from pending: cancelled"}
      """
    When I send a PUT request to "/api/v1/orders/${ORDER_ID_3}/status" with body:
      """
      {"status": "paid"}
      """
    Then the response status is 400
    When the inventory service is started again
    Then the order is paid
    And "Smart Fitness Watch" has 72 available and 3 reserved

  @stock @order-status
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
    # reservation stays as it is (had a release been published, it is handled once settled).
    And the shop has settled
    And "Premium Smartphone" has 49 available and 1 reserved
    When I send a PUT request to "/api/v1/orders/${ORDER_ID_1}/status" with body:
      """
      {"status": "cancelled"}
      """
    Then the response status is 400
    And the response body is:
      """
      {"detail": "Cannot change order status from refunded to cancelled. Allowed transitions from refunded: none"}
      """

  @stock @order-status
  Scenario: Refunding a paid order that never shipped gives its stock back
    When I send a PUT request to "/api/v1/orders/${ORDER_ID_2}/status" with body:
      """
      {"status": "refunded"}
      """
    Then the response status is 200
    And the response field "status" is "refunded"
    And "Wireless Noise-Cancelling Headphones" has 100 available and 0 reserved
    And "Smart Fitness Watch" has 75 available and 0 reserved
    And "Premium Smartphone" has 49 available and 1 reserved

  @order-status
  Scenario: Another customer's order is not found and cannot be changed
    Given another customer "other@example.com"
    When "other@example.com" logs in
    And I send a GET request to "/api/v1/orders/${ORDER_ID_1}"
    Then the response status is 404
    When I send a PUT request to "/api/v1/orders/${ORDER_ID_1}/status" with body:
      """
      {"status": "shipped"}
      """
    Then the response status is 404
    When I send a DELETE request to "/api/v1/orders/${ORDER_ID_2}"
    Then the response status is 404
    And the customer has 0 orders
    When "customer@example.com" logs in
    And I send a GET request to "/api/v1/orders/${ORDER_ID_1}"
    Then the response field "status" is "paid"
    When I send a GET request to "/api/v1/orders/${ORDER_ID_2}"
    Then the response field "status" is "paid"
    And the shop has settled
    And "Wireless Noise-Cancelling Headphones" has 99 available and 1 reserved
    And "Smart Fitness Watch" has 73 available and 2 reserved

  Scenario: An id that is not an order id is not found
    When I send a GET request to "/api/v1/orders/not-an-object-id"
    Then the response status is 404
    When I send a GET request to "/api/v1/orders/000000000000000000000000"
    Then the response status is 404
