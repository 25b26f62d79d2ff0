// Swagger UI from this server's own copy (no CDN), on this server's OpenAPI document. The
// validator badge is off: it would send the document to an outside validator.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
