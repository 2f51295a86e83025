Feature: Monitoring the message queues (guide section 7)
  The five order-flow queues (and the catalog's two) exist with their consumers, each with a
  dead-letter queue, and the flow leaves no message behind.

  Background:
    Given the shop is running
    And a customer with a default address
    And the guide's catalog

  @delivery @outbox
  Scenario: Section 7.3 - every queue has its consumers and no message is left after the orders are paid
    Given the customer has a paid order of 1 "Premium Smartphone"
    And the customer has a paid order of 1 "Wireless Noise-Cancelling Headphones" and 2 "Smart Fitness Watch"
    When the customer cancels order 2
    Then "Wireless Noise-Cancelling Headphones" has 100 available and 0 reserved
    And "Smart Fitness Watch" has 75 available and 0 reserved
    When I list the queues through the RabbitMQ management API
    Then the response body matches the snapshot "07_queues_after_the_order_flow"
    And the queue "order_created" is listed with 0 messages and 1 consumer

  @delivery @order-status
  Scenario: Messages that can never be processed are dead-lettered and the consumers go on
    # Events about an order id that cannot exist, or that no order has, are rejected by the order
    # service at once; a message that is not an order at all cannot be decoded by inventory. They
    # land in their queue's dead-letter queue, and the next order still flows through both
    # consumers. Each is named (by the order id it carries, or a name given when it is
    # published): the errors logged for those three messages are expected, no other, and the
    # dead-letter queues must hold exactly these when the scenario ends.
    When I publish to the queue "inventory_reserved":
      """
      {"order_id": "not-an-object-id"}
      """
    And I publish to the queue "inventory_reserved":
      """
      {"order_id": "000000000000000000000000"}
      """
    And I publish the message "not an order" to the queue "order_created":
      """
      {"this is": "not an order"}
      """
    Then "inventory_reserved" has 2 dead letters
    And each of them was rejected by the consumer of "inventory_reserved"
    And the message "not-an-object-id" is dead-lettered from "inventory_reserved"
    And the message "000000000000000000000000" is dead-lettered from "inventory_reserved"
    And the message "not an order" is dead-lettered from "order_created"
    When the customer orders 1 "Smart Fitness Watch"
    Then the order is paid

  @delivery
  Scenario: A dead letter replayed goes back to its consumer, which handles it
    # A product_created that inventory once gave up on, put straight into its dead-letter queue.
    When I publish to the queue "product_created.dead_letter":
      """
      {"product_id": "65f0000000000000000000a1", "quantity": 12}
      """
    Then "product_created" has 1 dead letter
    When the dead letters of "product_created" are replayed
    Then within 20 seconds the field "available_quantity" of GET "/api/v1/inventory/65f0000000000000000000a1" is "12"
    And "product_created" has 0 dead letters
