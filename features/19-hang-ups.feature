Feature: Clients that hang up mid-request lose no order and no stock
  A client may close its connection while its request is being handled: it timed out, its tab
  was closed, its phone lost signal. The gateway then closes its connection to the service, which
  drops the request's handler wherever it was. Whatever the shop had stored by then, it finishes:
  every order it stored is paid (there is stock for all of them) or, once cancelled, gives its
  stock back; stock is held for exactly the paid orders.

  Background:
    Given the shop is running
    And a customer with a default address

  Scenario: Hundreds of customers hang up while placing orders, then while cancelling them
    When the customer adds 1000 "Travel Mug" at 12.50 to the catalog
    And 250 orders for 2 "Travel Mug" are placed by clients that hang up
    Then within 60 seconds every order of the customer is "paid"
    And "Travel Mug" holds exactly the units of the customer's paid orders out of 1000
    When the customer cancels every order from a client that hangs up
    Then within 60 seconds every order of the customer is "paid or cancelled"
    And "Travel Mug" holds exactly the units of the customer's paid orders out of 1000
    And the shop has settled
