Feature: Asynchronous order processing (guide section 5)
  A customer places orders; each is accepted at once as pending, checked against the catalog,
  and moves to paid once inventory has reserved its items and the (simulated) payment is done.

  Background:
    Given the shop is running
    And a customer with a default address
    And the guide's catalog

  @stock @order-status
  Scenario: Section 5.1 to 5.4 - a single-product order is accepted pending, reaches paid and reserves its stock
    When I send a GET request to "/api/v1/users/me"
    Then the response status is 200
    And the response body matches the snapshot "05_users_me_with_address"
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
    And the response field "status" is "pending"
    And the response body matches the snapshot "05_single_product_order_created"
    And I remember the response field "_id" as "ORDER_ID_1"
    Then within 15 seconds the field "status" of GET "/api/v1/orders/${ORDER_ID_1}" is "paid"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}"
    Then the response status is 200
    And the response field "available_quantity" is "49"
    And the response field "reserved_quantity" is "1"
    And the response body matches the snapshot "05_inventory_reserved_for_single_order"

  @stock @order-status
  Scenario: Section 5.5 - a multi-product order totals exactly and reaches paid
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
    And the response field "total_price" is "609.97"
    And the response field "status" is "pending"
    And the response body matches the snapshot "05_multi_product_order_created"
    And I remember the response field "_id" as "ORDER_ID_2"
    Then within 15 seconds the field "status" of GET "/api/v1/orders/${ORDER_ID_2}" is "paid"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_2}"
    Then the response field "available_quantity" is "99"
    And the response field "reserved_quantity" is "1"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_3}"
    Then the response field "available_quantity" is "73"
    And the response field "reserved_quantity" is "2"

  Scenario: An order placed for another customer is forbidden and stored for nobody
    Given another customer "victim@example.com"
    When the customer tries to order 1 "Premium Smartphone" for "victim@example.com"
    Then the response status is 403
    And the response body is:
      """
      {"detail": "You can only place orders for yourself"}
      """
    And the customer has 0 orders
    And "victim@example.com" has 0 orders
    And the shop has settled
    And "Premium Smartphone" has 50 available and 0 reserved

  @stock
  Scenario: A price that differs from the catalog is refused and nothing is stored or reserved
    When the customer tries to order 1 "Premium Smartphone" at 19.99
    Then the response status is 400
    And the response body is:
      """
      {"detail": "Price of product ${PRODUCT_ID_1} is 899.99, not 19.99"}
      """
    And the customer has 0 orders
    And the shop has settled
    And "Premium Smartphone" has 50 available and 0 reserved

  Scenario: An order for a product that does not exist is refused
    When I send a POST request to "/api/v1/orders/" with body:
      """
      {
        "user_id": "${USER_ID}",
        "items": [{"product_id": "000000000000000000000000", "quantity": 1, "price": 899.99}],
        "shipping_address": {"line1": "123 Example Street", "line2": "Apt 4B", "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country"}
      }
      """
    Then the response status is 400
    And the response body is:
      """
      {"detail": "Product 000000000000000000000000 not found"}
      """
    And the customer has 0 orders

  Scenario: An order without items or with a quantity of zero is refused and nothing is stored
    When I send a POST request to "/api/v1/orders/" with body:
      """
      {
        "user_id": "${USER_ID}",
        "items": [],
        "shipping_address": {"line1": "123 Example Street", "line2": "Apt 4B", "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country"}
      }
      """
    Then the response status is 422
    And the refusal says "An order needs at least one item"
    When I send a POST request to "/api/v1/orders/" with body:
      """
      {
        "user_id": "${USER_ID}",
        "items": [{"product_id": "${PRODUCT_ID_1}", "quantity": 0, "price": 899.99}],
        "shipping_address": {"line1": "123 Example Street", "line2": "Apt 4B", "city": "Example City", "state": "EX", "postal_code": "12345", "country": "Example Country"}
      }
      """
    Then the response status is 422
    And the refusal says "Quantity must be greater than 0"
    When I send a POST request to "/api/v1/orders/" with body:
      """
      {"user_id": "${USER_ID}", "items": "not a list"}
      """
    Then the response status is 422
    And the customer has 0 orders

  Scenario: Orders need a token
    When I send a GET request to "/api/v1/orders/" without a token
    Then the response status is 401
    And the response header "WWW-Authenticate" is "Bearer"
