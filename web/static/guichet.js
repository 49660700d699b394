// guichet: progressive enhancements only; every page works without this file.
(function () {
  "use strict";
  function enhance(root) {
    // without this script the meter and the "voir" buttons would do nothing: they stay hidden
    root.querySelectorAll("[data-js-only]").forEach(function (element) { element.hidden = false; });
    // passkey forms are hidden until we know this browser can use them; otherwise say so instead
    root.querySelectorAll("form[data-webauthn]").forEach(function (form) {
      var supported = passkeysSupported();
      form.hidden = !supported;
      var note = unsupportedNote(form);
      if (note) note.hidden = supported;
    });
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

  // --- passkeys: <form data-webauthn="create|get" data-webauthn-options='{...}'> with a hidden
  // input "credential"; the browser's dialog fills it in, then the form is sent as it would be anyway
  var PASSKEY_MESSAGES = {
    NotAllowedError: "La clé d'accès n'a pas été utilisée : vous avez annulé, ou le délai est dépassé. " +
      "Vous pouvez réessayer, ou choisir une autre méthode.",
    InvalidStateError: "Cet appareil a déjà une clé d'accès pour votre espace privé : vous pouvez l'utiliser pour vous connecter.",
    SecurityError: "Votre navigateur refuse d'utiliser une clé d'accès à cette adresse. Choisissez une autre méthode.",
    unsupported: "Ce navigateur ne permet pas d'utiliser une clé d'accès. Choisissez une autre méthode.",
    other: "La clé d'accès n'a pas pu être utilisée. Vous pouvez réessayer, ou choisir une autre méthode."
  };

  function passkeysSupported() {
    // a passkey is bound to a domain name: a page opened at an IP address (http://127.0.0.1) cannot use one
    var ip = /^\d+\.\d+\.\d+\.\d+$|:/.test(location.hostname);
    return !!(window.PublicKeyCredential && navigator.credentials && window.isSecureContext !== false && !ip);
  }

  function unsupportedNote(form) {
    var scope = form.closest("#step") || form.parentNode;
    return scope ? scope.querySelector("[data-webauthn-unsupported]") : null;
  }

  function fromBase64url(text) {
    var binary = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer), binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withBuffers(options, ceremony) {
    // browsers without PublicKeyCredential.parse*OptionsFromJSON take ArrayBuffers, not base64url
    var out = JSON.parse(JSON.stringify(options));
    out.challenge = fromBase64url(out.challenge);
    if (ceremony === "create") out.user.id = fromBase64url(out.user.id);
    ["excludeCredentials", "allowCredentials"].forEach(function (key) {
      (out[key] || []).forEach(function (descriptor) { descriptor.id = fromBase64url(descriptor.id); });
    });
    return out;
  }

  function publicKeyOptions(options, ceremony) {
    var parse = ceremony === "create" ? "parseCreationOptionsFromJSON" : "parseRequestOptionsFromJSON";
    return typeof PublicKeyCredential[parse] === "function" ? PublicKeyCredential[parse](options) : withBuffers(options, ceremony);
  }

  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    var response = credential.response, out = {};
    ["clientDataJSON", "attestationObject", "authenticatorData", "signature", "userHandle"].forEach(function (key) {
      if (response[key]) out[key] = toBase64url(response[key]);
    });
    if (typeof response.getTransports === "function") out.transports = response.getTransports();
    return {
      id: credential.id, rawId: toBase64url(credential.rawId), type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      response: out
    };
  }

  function passkeyError(form, text) {
    var area = form.querySelector("[data-webauthn-error], #f-code-error");
    if (!area) {
      area = document.createElement("p");
      area.className = "error";
      area.setAttribute("role", "alert");
      area.setAttribute("data-webauthn-error", "");
      form.insertBefore(area, form.firstChild);
    }
    area.textContent = text;
    area.hidden = !text;
  }

  function runCeremony(form, submitter) {
    var ceremony = form.dataset.webauthn;
    if (!passkeysSupported()) {
      passkeyError(form, PASSKEY_MESSAGES.unsupported);
      return;
    }
    var options;
    try {
      options = publicKeyOptions(JSON.parse(form.dataset.webauthnOptions), ceremony);
    } catch (error) {
      passkeyError(form, PASSKEY_MESSAGES.other);
      return;
    }
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (button) { button.disabled = true; });
    passkeyError(form, "");
    var call = ceremony === "create" ? navigator.credentials.create({ publicKey: options })
      : navigator.credentials.get({ publicKey: options });
    call.then(function (credential) {
      if (!credential) throw { name: "NotAllowedError" };
      form.querySelector("input[name=credential]").value = JSON.stringify(credentialJSON(credential));
      buttons.forEach(function (button) { button.disabled = false; });
      form.dataset.webauthnReady = "1";
      // requestSubmit fires a submit event of its own: htmx (hx-post) or the browser sends the form as usual
      if (typeof form.requestSubmit === "function") form.requestSubmit(submitter && submitter.form === form ? submitter : undefined);
      else form.submit();
    }).catch(function (error) {
      buttons.forEach(function (button) { button.disabled = false; });
      passkeyError(form, PASSKEY_MESSAGES[error && error.name] || PASSKEY_MESSAGES.other);
    });
  }

  // capture, on the document: before htmx's own submit handler on the form sends it without a credential
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-webauthn")) return;
    if (form.dataset.webauthnReady === "1") {
      delete form.dataset.webauthnReady;
      return;
    }
    event.preventDefault();
    event.stopImmediatePropagation();
    runCeremony(form, event.submitter);
  }, true);

  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  document.addEventListener("htmx:afterSwap", function (event) {
    // a login renews the session and with it the CSRF token: the swapped-in forms carry the new one,
    // htmx's header (set on <body>, which a swap keeps) follows them
    var token = document.querySelector('input[name="csrf_token"]');
    if (token) document.body.setAttribute("hx-headers", JSON.stringify({"X-CSRF-Token": token.value}));
    var step = document.getElementById("step");
    if (!step) return;
    enhance(step);
    // the step swapped, or the whole body (a login done: Mon espace privé comes in the answer)
    var target = event.detail.target;
    if (target && target.id === "step" || target === step || target === document.body) {
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
