Feature: Metrics: every service reports its work at /metrics, in the Prometheus text format
  Requests by route and status with their latency, deliveries by queue and outcome with their
  handling time, the outbox's backlog, reservations and stock-outs, orders placed, paid,
  cancelled (by reason) and refunded, the time from an order's acceptance to its payment,
  readiness, and each store's connection pool (in use, idle, the most it opens, who waits). Each
  service instance reports its own work only. The alert rules in deploy/prometheus read these
  series (their logic is unit-tested by `cargo xtask alerts`).

  Background:
    Given the shop is running
    And a customer with a default address
    And the guide's catalog

  Scenario: An order paid shows in the metrics of every service that handled it
    When the customer orders 1 "Premium Smartphone"
    Then the order is paid
    And the shop has settled
    And the order service's metric "http_requests_total" with "method=POST,route=/api/v1/orders/,status=201" is 1
    And the order service's metric "messages_total" with "queue=inventory_reserved,outcome=handled" is 1
    And the order service's metric "messages_total" with "queue=order_processed,outcome=handled" is 1
    And the order service's metric "order_accepted_to_paid_seconds_count" with "" is 1
    And the order service's metric "outbox_events_pending" with "" is 0
    And the order service's metric "orders_placed_total" with "" is 1
    And the order service's metric "orders_paid_total" with "" is 1
    And the order service's metric "ready" with "" is 1
    And the order service's metric "ready_check" with "check=database" is 1
    And the order service's metric "pool_max_connections" with "pool=mongodb" is 20
    And the order service's metric "pool_connections" with "pool=mongodb,state=in_use" is 0
    And the order service's metric "pool_waiting" with "pool=mongodb" is 0
    And the product service's metric "pool_max_connections" with "pool=mongodb" is 10
    And the inventory service's metric "pool_max_connections" with "pool=postgres" is 3
    And the inventory service's metric "pool_connections" with "pool=postgres,state=in_use" is 0
    And the inventory service's metric "consumer_paused" with "queue=order_created" is 0
    # At 0 from each consumer's start, so that the alert on refused messages sees the first one.
    And the inventory service's metric "messages_total" with "queue=order_created,outcome=refused" is 0
    And the order service's metric "messages_total" with "queue=inventory_reserved,outcome=refused" is 0
    And the inventory service's metric "reservations_total" with "outcome=reserved" is 1
    And the inventory service's metric "messages_total" with "queue=product_created,outcome=handled" is 3
    And the product service's metric "http_requests_total" with "method=POST,route=/api/v1/products/,status=201" is 3

  Scenario: A stock-out and a dead letter are counted
    When the customer orders 51 "Premium Smartphone"
    Then the order is cancelled for lack of "Premium Smartphone"
    And the inventory service's metric "reservations_total" with "outcome=failed" is 1
    And the inventory service's metric "stock_outs_total" with "" is 1
    And the order service's metric "orders_cancelled_total" with "reason=out_of_stock" is 1
    And the order service's metric "orders_cancelled_total" with "reason=product_unavailable" is 0
    When I publish the message "not an order" to the queue "order_created":
      """
      {"this is": "not an order"}
      """
    Then the message "not an order" is dead-lettered from "order_created"
    And the inventory service's metric "messages_total" with "queue=order_created,outcome=dead_lettered" is 1

  Scenario: A customer's cancellation and a refund are counted apart from the shop's cancellations
    When the customer orders 1 "Premium Smartphone"
    Then the order is paid
    When the customer cancels the order
    And the customer orders 1 "Smart Fitness Watch"
    Then the order is paid
    When I send a PUT request to "/api/v1/orders/${ORDER_ID_2}/status" with body:
      """
      {"status": "refunded"}
      """
    Then the response status is 200
    And the order service's metric "orders_cancelled_total" with "reason=customer" is 1
    And the order service's metric "orders_cancelled_total" with "reason=out_of_stock" is 0
    And the order service's metric "orders_refunded_total" with "" is 1
    And the order service's metric "orders_placed_total" with "" is 2

  Scenario: Every series the alert rules read is one the shop reports
    When the customer orders 1 "Premium Smartphone"
    Then the order is paid
    And every series the alert rules read is reported by the services, RabbitMQ or Prometheus itself
