// Starts Swagger UI on the gateway's own /openapi.yaml. Everything it loads
// comes from the gateway; validatorUrl null keeps it from calling an online
// validator, so the page works with no internet access.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.yaml",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
