Feature: Login and sign-up throttling
  Guessing passwords is slow: after 5 wrong passwords for one account within 15 minutes, every
  login for that account is answered 429 with Retry-After until the oldest of them is 15 minutes
  old, and the gateway answers 429 to a client address that sends logins faster than 10 a second
  beyond a burst of 50. Sign-ups, each an argon2 hash, are limited per address the same way. A
  429 carries a JSON detail like every other error. The count of wrong passwords is the user
  service's, in its database: every replica counts the same attempts.

  Scenario: Wrong passwords for one account throttle that account, and only that one
    Given the shop is running
    And a customer "target@example.com" registered with password "Password123"
    And a customer "bystander@example.com" registered with password "Password123"
    When 5 wrong passwords are tried for "target@example.com"
    And "target@example.com" tries to log in with the right password
    Then the login is throttled for between 890 and 900 seconds
    When "bystander@example.com" tries to log in with the right password
    Then the response status is 200

  # nginx takes turns between the replicas: each sees some of the wrong passwords, none all five.
  Scenario: Wrong passwords tried through two replicas of the user service count together
    Given the shop is running with 2 replicas of the user and product services
    And a customer "target@example.com" registered with password "Password123"
    When 5 wrong passwords are tried for "target@example.com"
    And "target@example.com" tries to log in with the right password
    Then the login is throttled for between 890 and 900 seconds
    When "target@example.com" tries to log in with the right password
    Then the login is throttled for between 890 and 900 seconds

  Scenario Outline: A client address sending <requests> faster than the gateway allows is throttled at the gateway
    Given the shop is running
    When 120 <requests> are sent at once from one address
    Then as many of them were throttled as the gateway's rate and burst allow
    And the <request> is throttled for between 1 and 1 seconds

    Examples:
      | requests | request |
      | logins   | login   |
      | sign-ups | sign-up |
