Feature: Monitoring: a real Prometheus with the shop's alert rules sees an outage and its end
  Prometheus (Debian's package, which `cargo xtask e2e` installs) scrapes the scenario's
  services every second and evaluates deploy/prometheus/alerts.yml as it is, `for` clauses
  included: what an operator would see, through Prometheus's own API. The rules' logic is
  unit-tested by `cargo xtask alerts`; this proves they read what the shop really reports.

  Background:
    Given the shop is running
    And a customer with a default address
    And the guide's catalog

  # About two minutes: the rules wait a minute before firing, as they would in production.
  @outage
  Scenario: Inventory's database goes down: the service is not ready and its consumer paused, then both resolve
    Given Prometheus scrapes the shop with its alert rules
    Then Prometheus scrapes every service of the shop
    And within 30 seconds Prometheus has no alert firing
    When the inventory service's database goes down
    And the customer orders 1 "Premium Smartphone"
    Then within 120 seconds Prometheus has the alert "ServiceNotReady" firing with "job=inventory"
    And within 60 seconds Prometheus has the alert "ConsumerPaused" firing with "job=inventory,queue=order_created"
    When the inventory service's database is back
    Then the order is paid
    And within 60 seconds Prometheus has no alert firing
