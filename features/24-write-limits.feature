Feature: Writes are rate-limited per client at the gateway
  Every write (POST, PUT, PATCH, DELETE) through the gateway counts against its client's
  allowance: a signed-in customer's by their token, anyone else's by their address, with a
  ceiling for each address whatever tokens it sends. Beyond it the gateway answers 429 itself,
  with Retry-After and a JSON detail, before any service sees the request. Reads are not counted,
  and one customer's flood does not throttle another. The numbers (50 a second beyond a burst of
  500 per customer) are the gateway's own, read from its configuration by the steps.

  Background:
    Given the shop is running
    And a logged-in customer
    And another customer "bystander@example.com"

  Scenario: A customer sending writes faster than the gateway allows is throttled, and only that customer
    When 800 writes are sent at once by the customer
    Then as many of them were throttled as the gateway's rate and burst allow
    And the write is throttled for between 1 and 1 seconds
    When I send a GET request to "/api/v1/orders"
    Then the response status is 200
    # Another customer, from the same address, right after: a fresh allowance of their own.
    When "bystander@example.com" logs in
    And 40 writes are sent at once by the customer
    Then none of them was throttled
