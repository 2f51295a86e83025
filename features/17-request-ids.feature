Feature: One request id follows an order from POST to paid
  The caller's X-Request-Id (or, without a usable one, an id the gateway makes) is returned on
  the response, recorded on every log line of the request, and carried in the AMQP headers of
  every event it causes: one id follows an order through every service's logs. A caller's W3C
  trace context follows it the same way, so the order's trace holds every span it caused.

  Background:
    Given the shop is running
    And a customer with a default address
    And the guide's catalog

  Scenario: The caller's request id follows the order through every service that handles it
    When the customer orders 1 "Premium Smartphone" with the request id "order-trace-1"
    Then the response header "x-request-id" is "order-trace-1"
    And the order is paid
    And the shop has settled
    And the request id "order-trace-1" reached exactly:
      | service   | handling              |
      | order     | POST /api/v1/orders/  |
      | product   | GET /api/v1/products/ |
      | inventory | order_created         |
      | order     | inventory_reserved    |
      | order     | order_processed       |

  # OpenTelemetry: the caller's W3C trace context goes on through every service, stored with
  # each event in the outbox and carried in AMQP headers, to the harness's OTLP receiver.
  Scenario: The caller's trace follows the order from POST to paid, each span under its cause
    When the customer orders 1 "Premium Smartphone" in the trace "4bf92f3577b34da6a3ce929d0e0e4736" with the request id "order-trace-2"
    Then the order is paid
    And the shop has settled
    And the trace "4bf92f3577b34da6a3ce929d0e0e4736" is exactly:
      """
      POST /api/v1/orders/ (server)
        GET /api/v1/products/ (client)
          GET /api/v1/products/ (server)
        publish order_created (producer)
          consume order_created (consumer)
            publish inventory_reserved (producer)
              consume inventory_reserved (consumer)
                publish order_processed (producer)
                  consume order_processed (consumer)
      """
    And everywhere the request id "order-trace-2" went, the trace "4bf92f3577b34da6a3ce929d0e0e4736" went with it

  Scenario Outline: Without a usable request id, the gateway makes one: <case>
    When I send a GET request to "<path>" with the request id "<offered>"
    Then the response status is <status>
    And the response carries a request id the gateway made

    Examples:
      | case                     | path              | offered   | status |
      | a service answers        | /api/v1/products/ | has space | 200    |
      | the gateway answers      | /nowhere          |           | 404    |
