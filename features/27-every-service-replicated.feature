Feature: Two replicas of every service
  Every service runs as two replicas behind the gateway, against the same databases and queues,
  nginx taking turns between them on every route. What one process would keep to itself holds
  across both: each product is stocked once though both product replicas relay the catalog's
  outbox and both inventory replicas consume product events; each order is reserved once and
  paid once though two order relays and two inventory consumers could each take it; a login's
  tokens from one user replica are accepted by every replica of every service; a customer's
  cancellation puts the stock back once. (Login throttling across user replicas:
  13-login-throttling.)

  Background:
    Given the shop is running with 2 replicas of every service
    And a customer with a default address
    And the guide's catalog

  Scenario: The guide's orders with every service replicated
    # Each product's stock appeared once, from one product_created.
    Then the stock history of "Premium Smartphone" is "product_created"
    And the stock history of "Smart Fitness Watch" is "product_created"
    When the customer orders 1 "Premium Smartphone"
    Then the order is paid
    When the customer orders 2 "Smart Fitness Watch"
    Then the order is paid
    When the customer cancels order 2
    Then the order is cancelled
    And the shop has settled
    And "Premium Smartphone" has 49 available and 1 reserved
    And "Smart Fitness Watch" has 75 available and 0 reserved
    And the stock history of "Smart Fitness Watch" is "product_created, order_reserved, order_released"
