Feature: The broker takes an event only from the service that owns it
  Each service connects to RabbitMQ as a user of its own (order, inventory, product) with rights
  on its own queues only, and stamps that user on every message it publishes as the AMQP user_id,
  which the broker refuses unless it is the connection's own user. A consumer takes an order event
  only from the order service, a stock event only from inventory and a catalog event only from
  the product service: anything else is dead-lettered with the reason, counted, and changes
  nothing. These are the forgeries of issue 19, made with one service's broker password.

  Background:
    Given the shop is running
    And a customer with a default address
    And the guide's catalog

  @delivery @broker-trust
  Scenario: An order_created forged with the product service's credentials reserves nothing
    When the product service's broker user publishes to the queue "order_created":
      """
      {"order_id": "65f00000000000000000f0e1", "user_id": "1", "items": [{"product_id": "${PRODUCT_ID_3}", "quantity": 4}]}
      """
    Then the message "65f00000000000000000f0e1" is refused from "order_created" as published by "product"
    And the inventory service's metric "messages_total" with "queue=order_created,outcome=refused" is 1
    And "Smart Fitness Watch" has 75 available and 0 reserved
    When the customer orders 1 "Smart Fitness Watch"
    Then the order is paid
    And "Smart Fitness Watch" has 74 available and 1 reserved

  @delivery @broker-trust
  Scenario: An inventory_reserved forged for an order that cannot be served does not pay it
    When the inventory service is stopped
    And the customer orders 51 "Premium Smartphone"
    And the product service's broker user publishes to the queue "inventory_reserved":
      """
      {"order_id": "${ORDER_ID_1}"}
      """
    Then the message "${ORDER_ID_1}" is refused from "inventory_reserved" as published by "product"
    And the order service's metric "messages_total" with "queue=inventory_reserved,outcome=refused" is 1
    And the order is pending
    When the inventory service is started again
    Then the order is cancelled for lack of "Premium Smartphone"
    And "Premium Smartphone" has 50 available and 0 reserved

  @delivery @broker-trust
  Scenario: A release without a user id, even from a broker administrator, releases nothing
    Given the customer has a paid order of 2 "Smart Fitness Watch"
    When an administrator of the broker publishes to the queue "inventory_release" without a user id:
      """
      {"order_id": "${ORDER_ID_1}"}
      """
    Then the message "${ORDER_ID_1}" is refused from "inventory_release" as published by "nobody"
    And "Smart Fitness Watch" has 73 available and 2 reserved
    And the order is paid

  @delivery @broker-trust
  Scenario: A message stamped with another service's user is refused by the broker itself
    Given the customer has a paid order of 1 "Premium Smartphone"
    When the product service's broker user tries to publish to the queue "inventory_release" as the user "order":
      """
      {"order_id": "${ORDER_ID_1}"}
      """
    Then the broker refused it, saying "user_id property set to 'order' but authenticated user was 'product'"
    And the queue "inventory_release" holds 0 messages
    And "Premium Smartphone" has 49 available and 1 reserved
    And the order is paid
