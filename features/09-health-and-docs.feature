Feature: System health checks and API documentation (guide section 8 and the service docs)
  The gateway and every service answer their health checks, every service documents its API
  with an OpenAPI document and a Swagger UI that works offline, and the gateway answers in the
  same JSON error shape as the services when a path is unknown or a service is down.

  Background:
    Given the shop is running

  Scenario: Step 8.1 - the gateway answers its own health check
    When I send a GET request to "/health" without a token
    Then the response status is 200
    And the response body is:
      """
      {"status": "healthy", "service": "gateway"}
      """

  Scenario Outline: Step 8.1 - the <service> service answers its health check on its own port
    When I send a GET request directly to the <service> service at "/health"
    Then the response status is 200
    And the response body is:
      """
      {"status": "healthy", "service": "<service>-service"}
      """

    Examples:
      | service   |
      | product   |
      | order     |
      | inventory |
      | user      |

  Scenario Outline: The <service> service documents its API, offline, on its port and through the gateway
    When I send a GET request directly to the <service> service at "/api/v1/openapi.json"
    Then the response status is 200
    And the response field "info.title" is "<title>"
    And the response field "components.securitySchemes.bearer.scheme" is "bearer"
    And the response has the field "paths.<path>"
    And the Swagger UI of the <service> service works offline
    And the Swagger UI of the <service> service works offline through the gateway

    Examples:
      | service   | title             | path                |
      | product   | Product service   | /api/v1/products/   |
      | order     | Order service     | /api/v1/orders/     |
      | inventory | Inventory service | /api/v1/inventory/  |
      | user      | User service      | /api/v1/users/me    |

  Scenario: An unknown path is a JSON 404 from the gateway
    When I send a GET request to "/api/v1/nothing-here" without a token
    Then the response status is 404
    And the response body is:
      """
      {"detail": "Not Found"}
      """

  Scenario: A stopped service is a JSON 503 from the gateway, and answers again once started
    # The catalog is listed after the restart, so that an answer from an empty database fails.
    Given a logged-in customer
    And the guide's catalog
    When the product service is stopped
    And I send a GET request to "/api/v1/products/" without a token
    Then the response status is 503
    And the response body is:
      """
      {"detail": "Service temporarily unavailable"}
      """
    When the product service is started again
    And I send a GET request to "/api/v1/products/" without a token
    Then the response status is 200
    And the response body matches the snapshot "03_catalog_of_the_guide"
