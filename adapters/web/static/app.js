// The console's own script: Alpine components, registered before Alpine starts (the CSP build of
// Alpine evaluates no expressions of its own: an x-data names a component registered here, and
// x-on / x-bind name its properties). No inline script anywhere: the CSP forbids it.
document.addEventListener("alpine:init", function () {
  // the layout's menu on a phone: shown or hidden by its button
  window.Alpine.data("menu", function () {
    return {
      open: false,
      toggle: function () { this.open = !this.open; },
      get shown() { return this.open ? "open" : ""; },
    };
  });
});

// a live stream that says the session ended sends the page to the sign-in form
document.addEventListener("htmx:sseMessage", function (event) {
  if (event.detail && event.detail.type === "signed-out") { window.location.assign("/console/login"); }
});
