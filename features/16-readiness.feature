Feature: Readiness: every service says whether it can do its work
  `/health` says the process serves HTTP (liveness); `/ready` says that its store, the broker
  and each of its consumers work, and answers 503 with a JSON detail naming what does not. The
  harness starts a scenario only once every service is ready; compose's healthchecks use it too.

  Background:
    Given the shop is running

  Scenario Outline: The <service> service is ready and lists what it checked
    When I send a GET request directly to the <service> service at "/ready"
    Then the response status is 200
    And the response body matches the snapshot "16_ready_<service>"

    Examples:
      | service   |
      | user      |
      | product   |
      | inventory |
      | order     |

  Scenario: A service whose database is down is alive but not ready, until it is back
    When the order service's database goes down
    Then within 10 seconds the order service is not ready, naming its "database"
    And the order service's metric "ready" with "" is 0
    And the order service's metric "ready_check" with "check=database" is 0
    And the order service's metric "ready_check" with "check=broker" is 1
    When the order service's database is back
    Then within 30 seconds the order service is ready
    And the order service's metric "ready" with "" is 1

  Scenario: Without the broker, the inventory service's consumers and publisher are not ready
    When the message broker becomes unreachable
    Then within 10 seconds the inventory service is not ready, naming its "broker"
    And within 10 seconds the inventory service is not ready, naming its "consumer order_created"
    When the message broker is reachable again
    Then within 60 seconds the inventory service is ready
