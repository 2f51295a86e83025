Feature: HTTPS at the gateway
  The gateway terminates TLS (1.2 and 1.3 only, HTTP/2 offered by ALPN) with a certificate given
  by path (services/gateway/tls.conf.template). `cargo xtask up` serves HTTPS beside HTTP, on
  port 8443, with a certificate of a local certificate authority it makes once in .local/tls/, so
  the guide's http://localhost commands still work. Here each scenario's gateway gets a
  certificate of the run's own authority, and the client trusts that authority and nothing else:
  every request of these scenarios is verified HTTPS. The production profile's gateway redirects
  plain HTTP to HTTPS (the health check excepted) and sends HSTS.

  Scenario: The guide's walk over HTTPS and HTTP/2, the certificate verified
    Given the shop is running over HTTPS
    When I send a POST request to "/api/v1/auth/register" without a token with body:
      """
      {
        "email": "over.https@example.com",
        "password": "Password123",
        "first_name": "Over",
        "last_name": "Https"
      }
      """
    Then the response status is 201
    And the response came over HTTP/2.0
    And the response field "email" is "over.https@example.com"
    When I send a POST request to "/api/v1/auth/login" with form "username=over.https@example.com&password=Password123"
    Then the response status is 200
    And the response came over HTTP/2.0
    And the response field "token_type" is "bearer"
    Given a customer with a default address
    And the guide's catalog
    When the customer orders 1 "Premium Smartphone"
    Then the order is paid
    When I send a GET request to "/api/v1/orders/${ORDER_ID_1}"
    Then the response status is 200
    And the response came over HTTP/2.0
    And the response field "status" is "paid"
    And a client that does not trust the local certificate authority cannot reach the gateway

  Scenario: TLS 1.2 and 1.3 are both served, and plain HTTP still answers in development
    Given the shop is running over HTTPS
    When a client limited to TLS 1.2 sends a GET request to "/api/v1/products/"
    Then the response status is 200
    And the response came over HTTP/2.0
    When a client limited to TLS 1.3 sends a GET request to "/api/v1/products/"
    Then the response status is 200
    When I send a GET request to "/api/v1/products/" over plain HTTP
    Then the response status is 200
    And the response came over HTTP/1.1
    And the response has no header "Strict-Transport-Security"

  Scenario: The production gateway sends plain HTTP to HTTPS and HTTPS answers carry HSTS
    Given the shop is running over HTTPS with the production gateway
    When I send a POST request to "/api/v1/auth/login" over plain HTTP
    Then the response status is 308
    And the response header "Location" is "https://127.0.0.1:${HTTPS_PORT}/api/v1/auth/login"
    When I send a GET request to "/api/v1/products/?category=Electronics" over plain HTTP
    Then the response status is 308
    And the response header "Location" is "https://127.0.0.1:${HTTPS_PORT}/api/v1/products/?category=Electronics"
    # A probe of the container or the load balancer asks over plain HTTP.
    When I send a GET request to "/health" over plain HTTP
    Then the response status is 200
    When I send a GET request to "/api/v1/products/"
    Then the response status is 200
    And the response header "Strict-Transport-Security" is "max-age=31536000; includeSubDomains"
