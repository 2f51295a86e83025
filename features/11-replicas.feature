Feature: Two replicas of the order and inventory services
  The order and inventory services scale out: every replica consumes from the same queues
  (competing consumers, so each message is handled by one of them), and every order replica runs
  an outbox relay over the same orders, which claims an order's events before publishing them so
  that no event goes out once per replica and each order's events leave in the order they were
  stored. nginx balances each service's routes over its replicas.

  Background:
    Given the shop is running with 2 replicas of the order and inventory services
    And a customer with a default address
    And the guide's catalog

  # Serial: a hundred orders at once need the machine to themselves to race only each other.
  @serial @stock
  Scenario: 100 concurrent orders for a stock of 50 sell exactly 50 across two replicas
    When 100 orders for 1 "Premium Smartphone" are placed at once
    Then within 120 seconds 50 of those orders are paid and 50 are cancelled
    And "Premium Smartphone" has 0 available and 50 reserved

  @stock @delivery
  Scenario: An inventory replica killed between reserving and announcing leaves the order to the other replica
    # Replica 2 is held back, so that replica 1 takes the order; replica 1 opens its publishing
    # connection on its first publish, and that one hangs: the reservation is stored, never announced.
    When inventory replica 2 is stopped
    And inventory replica 1's broker stops answering new connections
    And the customer orders 1 "Premium Smartphone"
    Then "Premium Smartphone" has 49 available and 1 reserved
    And inventory replica 1's new broker connection hangs
    And the order is pending
    When inventory replica 2 is started again
    And inventory replica 1 is killed
    # The order_created replica 1 held goes to replica 2: announced there, not reserved twice.
    Then the order is paid
    And "Premium Smartphone" has 49 available and 1 reserved
    And the shop has settled
