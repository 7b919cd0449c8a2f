// Starts the vendored Swagger UI (assets/swagger-ui) on Onboard's own document. A file of its own,
// not an inline script, so that the page's Content-Security-Policy can forbid inline scripts.
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // Every group open, its operations listed; an operation opens on a click.
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    displayRequestDuration: true,
    // The default sends the document to validator.swagger.io for a badge: no outside calls.
    validatorUrl: null,
  });
});
