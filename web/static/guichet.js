// guichet: progressive enhancements only; every page works without this file.
(function () {
  "use strict";
  function enhance(root) {
    // without this script the meter and the "voir" buttons would do nothing: they stay hidden
    root.querySelectorAll("[data-js-only]").forEach(function (element) { element.hidden = false; });
    root.querySelectorAll("button[data-toggle]").forEach(function (button) {
      button.hidden = false;
      if (button.dataset.bound) return;
      button.dataset.bound = "1";
      button.addEventListener("click", function () {
        var input = document.getElementById(button.dataset.toggle);
        if (!input) return;
        var show = input.type === "password";
        input.type = show ? "text" : "password";
        var word = button.querySelector(".toggle-word") || button;
        word.textContent = show ? "masquer" : "voir";
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  document.addEventListener("htmx:afterSwap", function (event) {
    var step = document.getElementById("step");
    if (!step) return;
    enhance(step);
    if (event.detail.target && event.detail.target.id === "step" || event.detail.target === step) {
      if (step.dataset.title) document.title = step.dataset.title;
      var error = step.querySelector(".alert:not(:empty)");
      var heading = step.querySelector("h1");
      var focus = error && error.querySelector("a") ? error.querySelector("a") : heading;
      if (focus) focus.focus();
      // the swap brought a new live region: fill it a moment later so screen readers read the notice out
      var notice = step.querySelector(".notice:not(:empty)");
      if (notice && !error) {
        var content = notice.innerHTML;
        notice.innerHTML = "";
        setTimeout(function () { notice.innerHTML = content; }, 150);
      }
    }
  });
})();
