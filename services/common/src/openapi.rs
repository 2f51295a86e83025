//! `GET /api/v1/openapi.json` and Swagger UI at `GET /api/v1/docs`, served from assets
//! embedded at build time so the page works offline.

use axum::Router;
use utoipa_swagger_ui::SwaggerUi;

pub const DOCS_PATH: &str = "/api/v1/docs";
pub const SPEC_PATH: &str = "/api/v1/openapi.json";

pub fn router(mut spec: utoipa::openapi::OpenApi) -> Router {
    document_refusals(&mut spec);
    // No validator: Swagger UI would otherwise send the document to validator.swagger.io, which
    // an offline machine cannot reach (and which has no business seeing our API).
    let config = utoipa_swagger_ui::Config::default().validator_url("none");
    Router::new().merge(SwaggerUi::new(DOCS_PATH).url(SPEC_PATH, spec).config(config))
}

/// Where Swagger UI's "Authorize" sends the OAuth2 password form: the user service's login, as
/// the gateway routes it (so it works on the user service's own docs and through the gateway).
pub const TOKEN_URL: &str = "/api/v1/auth/login";

/// Declares the two ways to send the access token, which protected operations name with
/// `security(("bearer" = []), ("oauth2" = []))`: `bearer` (paste a token) and `oauth2`, the
/// password flow at [`TOKEN_URL`] (Swagger UI asks for the email and password and fetches the
/// token itself). Import it and name it in `#[openapi(modifiers(&BearerSecurity))]`.
pub struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "oauth2",
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new(TOKEN_URL, Scopes::new()))])),
        );
    }
}

/// Adds to every operation the refusals the shared extractors (`common::extract`) give before
/// the handler runs, where the operation does not document them itself, so that the document
/// lists every status the service answers: for a JSON body, 400 (not JSON), 415 (another content
/// type) and 422 (JSON of the wrong shape); for path or query parameters, 422 (a value of the
/// wrong type, such as an id too large for its integer). Each with the usual `{"detail": ...}`.
pub fn document_refusals(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let has_error_body = spec.components.as_ref().is_some_and(|components| components.schemas.contains_key("ErrorBody"));
    let refusal = |description: &str| {
        let response = ResponseBuilder::new().description(description);
        let response = if has_error_body {
            response.content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        } else {
            response
        };
        utoipa::openapi::RefOr::T(response.build())
    };
    for item in spec.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            let mut refusals = Vec::new();
            if operation.request_body.is_some() {
                refusals.push(("400", "The body is not JSON"));
                refusals.push(("415", "The body is not sent as application/json"));
                refusals.push(("422", "The body is JSON of the wrong shape or types"));
            }
            if operation.parameters.as_ref().is_some_and(|parameters| !parameters.is_empty()) {
                refusals.push(("422", "A path or query parameter of the wrong type"));
            }
            for (status, description) in refusals {
                operation.responses.responses.entry(status.to_owned()).or_insert_with(|| refusal(description));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_with_a_body_or_parameters_documents_what_the_extractors_refuse() {
        use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
        use utoipa::openapi::request_body::RequestBodyBuilder;
        use utoipa::openapi::{HttpMethod, OpenApiBuilder, PathsBuilder, ResponseBuilder};
        let with_body = OperationBuilder::new()
            .request_body(Some(RequestBodyBuilder::new().build()))
            .response("422", ResponseBuilder::new().description("documented by the handler"))
            .build();
        let with_parameter =
            OperationBuilder::new().parameter(ParameterBuilder::new().name("id").parameter_in(ParameterIn::Path)).build();
        let bare = OperationBuilder::new().response("200", ResponseBuilder::new().description("fine")).build();
        let paths = PathsBuilder::new()
            .path("/things", PathItem::new(HttpMethod::Post, with_body))
            .path("/things/{id}", PathItem::new(HttpMethod::Delete, with_parameter))
            .path("/health", PathItem::new(HttpMethod::Get, bare))
            .build();
        let mut spec = OpenApiBuilder::new().paths(paths).build();
        document_refusals(&mut spec);
        let statuses = |path: &str, operation: fn(&PathItem) -> Option<&utoipa::openapi::path::Operation>| {
            let operation = operation(&spec.paths.paths[path]).expect("the operation");
            operation.responses.responses.keys().cloned().collect::<Vec<_>>()
        };
        assert_eq!(statuses("/things", |item| item.post.as_ref()), ["400", "415", "422"]);
        assert_eq!(statuses("/things/{id}", |item| item.delete.as_ref()), ["422"]);
        assert_eq!(statuses("/health", |item| item.get.as_ref()), ["200"]);
        // What an operation documents itself is kept.
        let post = spec.paths.paths["/things"].post.as_ref().expect("post");
        let kept = serde_json::to_string(&post.responses.responses["422"]).expect("JSON");
        assert!(kept.contains("documented by the handler"), "{kept}");
    }
}
