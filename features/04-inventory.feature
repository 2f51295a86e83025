Feature: Inventory created from the catalog, read and adjusted (guide section 4)
  Creating a product creates its stock record asynchronously, through an event stored with the
  product (a transactional outbox) and consumed exactly once by the inventory service, even when
  that service or the broker is down at the time. Stock is read, listed and adjusted by signed-in
  users, and never goes below zero.

  Background:
    Given the shop is running
    And a logged-in customer

  Scenario: Step 4.2 - inventory was created for each product
    Given the guide's catalog
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}"
    Then the response status is 200
    And the response body matches the snapshot "04_inventory_of_product_1"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_2}"
    Then the response status is 200
    And the response body matches the snapshot "04_inventory_of_product_2"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_3}"
    Then the response field "reorder_threshold" is "7"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}/history"
    Then the response status is 200
    And the response body matches the snapshot "04_history_of_a_new_product"

  Scenario: Inventory needs a valid token and a valid product id
    Given the guide's catalog
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}" without a token
    Then the response status is 401
    And the response header "WWW-Authenticate" is "Bearer"
    When I send a GET request to "/api/v1/inventory/" with the token "abc"
    Then the response status is 401
    When I send a GET request to "/api/v1/inventory/not-an-object-id"
    Then the response status is 422
    When I send a GET request to "/api/v1/inventory/000000000000000000000000"
    Then the response status is 404
    And the response body is:
      """
      {"detail": "Inventory for product 000000000000000000000000 not found"}
      """

  Scenario: Listing stock records, all of them or only those running low
    Given the guide's catalog
    When I send a GET request to "/api/v1/inventory/"
    Then the response status is 200
    And the response body matches the snapshot "04_inventory_of_the_guide"
    # Stock records are listed in the order their products were created, so a page that skips one
    # starts at the second product's.
    When I send a GET request to "/api/v1/inventory/?skip=1&limit=1"
    Then the response lists only the stock of "Wireless Noise-Cancelling Headphones"
    When I send a GET request to "/api/v1/inventory/?low_stock=true"
    Then the response status is 200
    And the response body is:
      """
      []
      """
    When I send a POST request to "/api/v1/inventory/${PRODUCT_ID_1}/adjust" with body:
      """
      {"quantity_change": -45, "reason": "stock count"}
      """
    Then the response status is 200
    And the response field "available_quantity" is "5"
    When I send a GET request to "/api/v1/inventory/?low_stock=true"
    Then the response lists only the stock of "Premium Smartphone"
    When I send a GET request to "/api/v1/inventory/?limit=500"
    Then the response status is 422
    When I send a GET request to "/api/v1/inventory/?low_stock=maybe"
    Then the response status is 422

  Scenario: Stock is adjusted by hand, never below zero, and every change is in the history
    Given the guide's catalog
    When I send a POST request to "/api/v1/inventory/${PRODUCT_ID_1}/adjust" with body:
      """
      {"quantity_change": 10, "reason": "delivery from supplier"}
      """
    Then the response status is 200
    And the response body matches the snapshot "04_inventory_of_product_1_after_a_delivery"
    When I send a POST request to "/api/v1/inventory/${PRODUCT_ID_1}/adjust" with body:
      """
      {"quantity_change": -61, "reason": "breakage"}
      """
    Then the response status is 409
    And the response body is:
      """
      {"detail": "cannot change the available quantity of product ${PRODUCT_ID_1} by -61: 60 available and 0 reserved, and available must stay at least 0 and available plus reserved at most 2147483647"}
      """
    When I send a POST request to "/api/v1/inventory/${PRODUCT_ID_1}/adjust" with body:
      """
      {"quantity_change": 0, "reason": "nothing"}
      """
    Then the response status is 422
    When I send a POST request to "/api/v1/inventory/${PRODUCT_ID_1}/adjust" with body:
      """
      {"quantity_change": 5}
      """
    Then the response status is 422
    When I send a POST request to "/api/v1/inventory/${PRODUCT_ID_1}/adjust" with body:
      """
      {"quantity_change": "5", "reason": "a string"}
      """
    Then the response status is 422
    When I send a POST request to "/api/v1/inventory/000000000000000000000000/adjust" with body:
      """
      {"quantity_change": 5, "reason": "unknown product"}
      """
    Then the response status is 404
    When I send a POST request to "/api/v1/inventory/${PRODUCT_ID_1}/adjust" without a token with body:
      """
      {"quantity_change": 5, "reason": "anonymous"}
      """
    Then the response status is 401
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}"
    Then the response body matches the snapshot "04_inventory_of_product_1_after_a_delivery"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}/history"
    Then the response status is 200
    And the response body matches the snapshot "04_history_after_a_delivery"

  @outbox
  Scenario: Inventory appears for a product created while the inventory service is stopped
    When the inventory service is stopped
    And the customer adds 40 "Desk Lamp" at 39.90 to the catalog
    And the inventory service is started again
    Then "Desk Lamp" has 40 available and 0 reserved
    And the response body matches the snapshot "04_inventory_of_the_lamp"
    And the stock history of "Desk Lamp" is "product_created"

  @outbox
  Scenario: Inventory appears, once, for a product created while the broker is unreachable
    When the message broker becomes unreachable
    And the customer adds 40 "Desk Lamp" at 39.90 to the catalog
    And the message broker is reachable again
    Then "Desk Lamp" has 40 available and 0 reserved
    And the response body matches the snapshot "04_inventory_of_the_lamp"
    # Once: a second product_created, had the relay published one, is handled by now.
    And the shop has settled
    And the stock history of "Desk Lamp" is "product_created"
    And "Desk Lamp" has 40 available and 0 reserved

  @delivery
  Scenario: A duplicated product_created event changes nothing, neither stock nor history
    Given the guide's catalog
    When I send a POST request to "/api/v1/inventory/${PRODUCT_ID_1}/adjust" with body:
      """
      {"quantity_change": -3, "reason": "stock count"}
      """
    Then the response status is 200
    When I publish to the queue "product_created":
      """
      {"product_id": "${PRODUCT_ID_1}", "quantity": 50}
      """
    # product_created is consumed one message at a time, in order: once the product created
    # after the duplicate has its stock, the duplicate has been handled.
    And the customer adds 40 "Desk Lamp" at 39.90 to the catalog
    Then "Desk Lamp" has 40 available and 0 reserved
    And the shop has settled
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}"
    Then the response status is 200
    And the response body matches the snapshot "04_inventory_of_product_1_after_a_duplicate_event"
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_1}/history"
    Then the response body matches the snapshot "04_history_after_a_duplicate_event"
