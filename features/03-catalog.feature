Feature: The product catalog (guide sections 3 and 4)
  A signed-in customer creates products; anyone browses and filters them. Prices are exact to the
  cent, ids are MongoDB ObjectIds, and bad input is refused with a 4xx before it reaches the
  database, leaving the catalog as it was.

  Background:
    Given the shop is running
    And a logged-in customer

  Scenario: Steps 3.1 to 3.3 - three products are created
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
    And the response body matches the snapshot "03_product_1_created"
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
    And the response body matches the snapshot "03_product_2_created"
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
    And the response body matches the snapshot "03_product_3_created"
    When I send a GET request to "/api/v1/products/${PRODUCT_ID_2}"
    Then the response status is 200
    And the response body matches the snapshot "03_product_2_created"

  Scenario: Step 4.1 - every product, in creation order, for anyone
    Given the guide's catalog
    When I send a GET request to "/api/v1/products/"
    Then the response status is 200
    And the response body matches the snapshot "03_catalog_of_the_guide"
    When I send a GET request to "/api/v1/products/" without a token
    Then the response status is 200
    And the response body matches the snapshot "03_catalog_of_the_guide"

  Scenario: Step 4.3 - products of one category
    Given the guide's catalog
    When I send a GET request to "/api/v1/products/?category=Electronics"
    Then the response status is 200
    And the response body matches the snapshot "03_products_in_electronics"

  Scenario: Step 4.4 - products in a price range, bounds included
    Given the guide's catalog
    When I send a GET request to "/api/v1/products/?min_price=100&max_price=300"
    Then the response status is 200
    And the response body matches the snapshot "03_products_between_100_and_300"
    When I send a GET request to "/api/v1/products/?min_price=179.99&max_price=249.99"
    Then the response status is 200
    And the response body matches the snapshot "03_products_between_100_and_300"

  Scenario: The name filter is a case-insensitive substring, matched literally
    Given the guide's catalog
    When I send a GET request to "/api/v1/products/?name=SMART"
    Then the response status is 200
    And the response lists only the products "Premium Smartphone" and "Smart Fitness Watch"
    When I send a GET request to "/api/v1/products/?name=noise-cancelling&category=Audio&max_price=250"
    Then the response status is 200
    And the response lists only the product "Wireless Noise-Cancelling Headphones"
    # A regular expression is text to look for, not a pattern: nothing is named ".*".
    When I send a GET request to "/api/v1/products/?name=.%2A"
    Then the response status is 200
    And the response body is:
      """
      []
      """

  Scenario: Filters that match nothing answer an empty list
    Given the guide's catalog
    When I send a GET request to "/api/v1/products/?category=Toys"
    Then the response status is 200
    And the response body is:
      """
      []
      """
    When I send a GET request to "/api/v1/products/?category=electronics"
    Then the response body is:
      """
      []
      """
    When I send a GET request to "/api/v1/products/?min_price=1000"
    Then the response body is:
      """
      []
      """
    When I send a GET request to "/api/v1/products/?min_price=300&max_price=100"
    Then the response body is:
      """
      []
      """
    When I send a GET request to "/api/v1/products/?name=Toaster"
    Then the response body is:
      """
      []
      """
    When I send a GET request to "/api/v1/products/?skip=3"
    Then the response status is 200
    And the response body is:
      """
      []
      """

  Scenario: Paging with skip and limit
    Given the guide's catalog
    # Products are listed in creation order (step 4.1), so a page that skips one starts at the second.
    When I send a GET request to "/api/v1/products/?skip=1&limit=1"
    Then the response status is 200
    And the response lists only the product "Wireless Noise-Cancelling Headphones"
    When I send a GET request to "/api/v1/products/?limit=101"
    Then the response status is 422
    When I send a GET request to "/api/v1/products/?limit=0"
    Then the response status is 422
    When I send a GET request to "/api/v1/products/?skip=-1"
    Then the response status is 422

  Scenario: Bad filters are refused, never passed on as database operators
    Given the guide's catalog
    When I send a GET request to "/api/v1/products/?category[$ne]=x"
    Then the response status is 422
    When I send a GET request to "/api/v1/products/?name[$regex]=.*"
    Then the response status is 422
    When I send a GET request to "/api/v1/products/?min_price=cheap"
    Then the response status is 422
    When I send a GET request to "/api/v1/products/?max_price=-5"
    Then the response status is 422
    When I send a GET request to "/api/v1/products/?category=Audio&category=Wearables"
    Then the response status is 422

  Scenario: Invalid products are refused and the catalog is unchanged
    Given the guide's catalog
    When I send a POST request to "/api/v1/products/" with body:
      """
      {"name": "Broken", "description": "", "category": "Misc", "price": -1.00, "quantity": 1}
      """
    Then the response status is 422
    And the response field "detail" contains "negative"
    When I send a POST request to "/api/v1/products/" with body:
      """
      {"name": "Broken", "description": "", "category": "Misc", "price": 9.999, "quantity": 1}
      """
    Then the response status is 422
    And the response field "detail" contains "two decimal places"
    When I send a POST request to "/api/v1/products/" with body:
      """
      {"name": "Broken", "description": "", "category": "Misc", "price": 10, "quantity": -1}
      """
    Then the response status is 422
    And the response body matches the snapshot "03_product_with_negative_quantity_refused"
    When I send a POST request to "/api/v1/products/" with body:
      """
      {"name": "Broken", "description": "", "category": "Misc", "price": "10", "quantity": 1}
      """
    Then the response status is 422
    When I send a POST request to "/api/v1/products/" with body:
      """
      {"name": "Broken", "description": "", "category": "Misc", "price": 10, "quantity": 1.5}
      """
    Then the response status is 422
    When I send a POST request to "/api/v1/products/" with body:
      """
      {"name": {"$gt": ""}, "description": "", "category": "Misc", "price": 10, "quantity": 1}
      """
    Then the response status is 422
    When I send a POST request to "/api/v1/products/" with body:
      """
      {"name": "Broken", "category": "Misc", "price": 10, "quantity": 1, "outbox": []}
      """
    Then the response status is 422
    When I send a POST request to "/api/v1/products/" with body:
      """
      {"name": "  ", "category": "Misc", "price": 10, "quantity": 1}
      """
    Then the response status is 422
    When I send a POST request to "/api/v1/products/" with body:
      """
      {"name": "Broken", "category": "Misc", "price": 10}
      """
    Then the response status is 422
    When I send a POST request to "/api/v1/products/" with body:
      """
      {"name": "Broken", "category": "Misc", "price": 10, "quantity": 1
      """
    Then the response status is 400
    When I send a POST request to "/api/v1/products/" without a token with body:
      """
      {"name": "Anonymous", "category": "Misc", "price": 10, "quantity": 1}
      """
    Then the response status is 401
    And the response header "WWW-Authenticate" is "Bearer"
    When I send a GET request to "/api/v1/products/"
    Then the response status is 200
    And the response body matches the snapshot "03_catalog_of_the_guide"

  Scenario: One product by id; ids that cannot exist are 422, unknown ones 404
    Given the guide's catalog
    When I send a GET request to "/api/v1/products/${PRODUCT_ID_1}"
    Then the response status is 200
    And the response field "price" is "899.99"
    And the response field "_id" is "${PRODUCT_ID_1}"
    When I send a GET request to "/api/v1/products/not-an-object-id"
    Then the response status is 422
    When I send a GET request to "/api/v1/products/000000000000000000000000"
    Then the response status is 404
    And the response body is:
      """
      {"detail": "Product 000000000000000000000000 not found"}
      """
    When I send a PUT request to "/api/v1/products/not-an-object-id" with body:
      """
      {"price": 1.00}
      """
    Then the response status is 422
    When I send a DELETE request to "/api/v1/products/not-an-object-id"
    Then the response status is 422

  Scenario: A product's details change with a partial update; its stock does not change here
    Given the guide's catalog
    When I send a PUT request to "/api/v1/products/${PRODUCT_ID_1}" with body:
      """
      {"price": 849.99, "description": "Last year's model"}
      """
    Then the response status is 200
    And the response body matches the snapshot "03_product_1_repriced"
    When I send a PUT request to "/api/v1/products/${PRODUCT_ID_1}" with body:
      """
      {"name": "Premium Smartphone", "quantity": 50}
      """
    Then the response status is 200
    And the response body matches the snapshot "03_product_1_repriced"
    When I send a PUT request to "/api/v1/products/${PRODUCT_ID_1}" with body:
      """
      {"quantity": 80}
      """
    Then the response status is 400
    And the response field "detail" contains "/api/v1/inventory/${PRODUCT_ID_1}/adjust"
    When I send a PUT request to "/api/v1/products/${PRODUCT_ID_1}" with body:
      """
      {"price": -3}
      """
    Then the response status is 422
    When I send a PUT request to "/api/v1/products/${PRODUCT_ID_1}" with body:
      """
      {}
      """
    Then the response status is 422
    When I send a PUT request to "/api/v1/products/${PRODUCT_ID_1}" with body:
      """
      {"category": {"$set": "Hacked"}}
      """
    Then the response status is 422
    When I send a PUT request to "/api/v1/products/${PRODUCT_ID_1}" without a token
    Then the response status is 401
    When I send a PUT request to "/api/v1/products/000000000000000000000000" with body:
      """
      {"price": 1.00}
      """
    Then the response status is 404
    When I send a GET request to "/api/v1/products/${PRODUCT_ID_1}"
    Then the response body matches the snapshot "03_product_1_repriced"
    And the shop has settled
    And "Premium Smartphone" has 50 available and 0 reserved

  Scenario: A deleted product leaves the catalog and its stock record is retired
    Given the guide's catalog
    When I send a DELETE request to "/api/v1/products/${PRODUCT_ID_2}" without a token
    Then the response status is 401
    When I send a DELETE request to "/api/v1/products/${PRODUCT_ID_2}"
    Then the response status is 204
    And the response body is empty
    When I send a GET request to "/api/v1/products/${PRODUCT_ID_2}"
    Then the response status is 404
    When I send a DELETE request to "/api/v1/products/${PRODUCT_ID_2}"
    Then the response status is 404
    When I send a GET request to "/api/v1/products/"
    Then the response lists only the products "Premium Smartphone" and "Smart Fitness Watch"
    And within 15 seconds GET "/api/v1/inventory/${PRODUCT_ID_2}" answers 404
    When I send a GET request to "/api/v1/inventory/${PRODUCT_ID_2}/history"
    Then the response status is 200
    And the response body matches the snapshot "03_history_of_a_deleted_product"
