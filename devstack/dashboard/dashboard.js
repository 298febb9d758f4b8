// The local dev dashboard: plain JavaScript over the real agents API (same origin, local token).
(function () {
  "use strict";
  var token = document.querySelector('meta[name="api-token"]').content;
  var headers = { Authorization: "Bearer " + token, "Content-Type": "application/json" };
  var tbody = document.querySelector("#agents tbody");
  // The statuses the API accepts a resend in (409 otherwise).
  var RESENDABLE = ["invite_pending", "invited", "invite_failed", "failed"];
  var STATUS_LABELS = {
    invite_pending: "Sending invite…",
    invited: "Invite sent",
    invite_failed: "Invite not sent",
    invite_bounced: "Invite bounced",
    connecting: "Connecting…",
    needs_settings: "Needs settings",
    verified: "Connected",
    needs_reconnect: "Needs reconnect",
    disconnected: "Disconnected",
    failed: "Failed"
  };
  // Where the owner gets a reconnect email (409 otherwise), and where a check can run (404 until the health
  // checks are deployed: the button shows the API's message).
  var RECONNECTABLE = ["needs_reconnect", "disconnected"];
  var CHECKABLE = ["verified", "needs_reconnect", "disconnected"];
  var CHECK_STATES = { ok: "checks OK", retrying: "retrying (keeps its tick)", locked: "account locked: waiting" };
  var filter = ""; // the status the list shows ("" = all)
  // Short words for the verdicts the workflow records (the owner's page explains them in full).
  var REASON_LABELS = {
    auth_failed: "wrong password",
    autodiscover_failed: "server not found automatically",
    mailbox_not_found: "unknown address",
    access_denied: "no access to this mailbox",
    account_locked: "account locked",
    modern_auth_required: "Microsoft 365 needs Microsoft sign-in",
    unreachable: "server unreachable",
    tls_error: "certificate problem",
    timeout: "server did not answer",
    server_busy: "server busy, try later",
    blocked_address: "private server address",
    confirm_server: "waits for the owner to allow a server",
    settings_timeout: "settings never entered",
    discovery_timeout: "finding the server took too long",
    verification_timeout: "the server took too long",
    internal_error: "error on our side",
    // Microsoft 365 ("Sign in with Microsoft"); the owner's page explains each
    m365_consent_declined: "owner did not allow access",
    m365_admin_consent_required: "needs approval by their IT admin",
    m365_wrong_account: "signed in with another account",
    m365_no_mailbox: "no Microsoft 365 mailbox for this account",
    m365_conditional_access_blocked: "blocked by their organisation's sign-in rules",
    m365_account_disabled: "Microsoft account disabled",
    m365_tenant_disabled: "their Microsoft 365 is not available",
    m365_account_locked: "Microsoft account locked",
    m365_personal_account: "personal Microsoft account, not work or school",
    m365_access_denied: "apps may not read this mailbox",
    m365_token_rejected: "Microsoft sign-in no longer valid",
    m365_throttled: "Microsoft asked us to slow down",
    m365_unavailable: "Microsoft 365 did not answer properly",
    m365_timeout: "Microsoft did not answer in time",
    m365_sign_in_expired: "Microsoft sign-in expired",
    m365_sign_in_invalid: "Microsoft sign-in could not be used",
    m365_sign_in_failed: "Microsoft sign-in failed",
    m365_not_configured: "Microsoft 365 sign-in is not set up"
  };
  // Statuses in which nothing the owner signs in with is kept yet (or any more).
  var NOTHING_STORED = ["invite_pending", "invited", "invite_failed", "invite_bounced"];
  var confirming = null; // the agent whose removal waits for "Yes, remove" (kept across refreshes)

  function api(method, path, body) {
    return fetch(path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined })
      .then(function (r) {
        if (r.status === 204) { return null; }
        return r.json().then(function (json) {
          if (!r.ok) { var e = json.error || {}; throw new Error((e.message || r.status) + detailText(e.details)); }
          return json;
        });
      });
  }
  function detailText(details) {
    if (!details || !details.length) { return ""; }
    return ": " + details.map(function (d) { return (d.field ? d.field + " " : "") + d.message; }).join("; ");
  }
  function statusLabel(agent) {
    var label = STATUS_LABELS[agent.status] || agent.status.replace(/_/g, " ");
    var reason = agent.statusReason;
    if (reason && agent.status !== "verified") {
      label += ": " + (REASON_LABELS[reason] || "other problem (" + reason + ")");
    }
    return label;
  }
  function cell(label, text, cls) {
    var td = document.createElement("td");
    td.dataset.label = label;
    td.textContent = text;
    if (cls) { td.className = cls; }
    return td;
  }
  // An address as text with wrap points after "@" and before each dot (<wbr>), so a narrow column breaks
  // it between its parts, not mid-word.
  function address(text) {
    var fragment = document.createDocumentFragment();
    text.split(/(?<=@)|(?=\.)/).forEach(function (part, i) {
      if (i > 0) { fragment.appendChild(document.createElement("wbr")); }
      fragment.appendChild(document.createTextNode(part));
    });
    return fragment;
  }
  // What removing the agent ends and deletes, in the words of how the mailbox was connected (`signIn`).
  function removalQuestion(agent) {
    if (NOTHING_STORED.indexOf(agent.status) >= 0) { return " Its invite link stops working."; }
    if (agent.status === "failed") { return " Its invite link stops working; nothing is stored for it."; }
    var secret = agent.signIn === "microsoft" ? "its Microsoft sign-in (refresh token)"
      : agent.signIn === "password" ? "its stored password" : "what it signs in with";
    var ends = agent.status === "verified" ? "Monitoring stops" : "The connection check stops";
    return " " + ends + " and " + secret + " is deleted.";
  }
  function button(label, onClick, cls) {
    var b = document.createElement("button");
    b.type = "button"; b.textContent = label; b.className = "small" + (cls ? " " + cls : ""); b.onclick = onClick;
    return b;
  }

  function actionsFor(agent) {
    var actions = document.createElement("td");
    actions.className = "actions";
    if (confirming === agent.agentId) {
      var question = document.createElement("span");
      question.className = "confirm";
      question.setAttribute("role", "alert");
      question.appendChild(document.createTextNode("Remove " + agent.name + " ("));
      question.appendChild(address(agent.email));
      question.appendChild(document.createTextNode(")?" + removalQuestion(agent)));
      actions.appendChild(question);
      actions.appendChild(button("Yes, remove", function () {
        confirming = null;
        api("DELETE", "/agents/" + agent.agentId).then(load, alertError);
      }, "danger"));
      actions.appendChild(button("Cancel", function () { confirming = null; load(); }));
      return actions;
    }
    if (RECONNECTABLE.indexOf(agent.status) >= 0) {
      actions.appendChild(button("Send reconnect email", function () {
        api("POST", "/agents/" + agent.agentId + "/reconnect").then(load, alertError);
      }));
    }
    if (CHECKABLE.indexOf(agent.status) >= 0) {
      actions.appendChild(button("Check now", function () {
        api("POST", "/agents/" + agent.agentId + "/check").then(load, alertError);
      }));
    }
    if (RESENDABLE.indexOf(agent.status) >= 0) {
      actions.appendChild(button("Resend invite", function () { api("POST", "/agents/" + agent.agentId + "/invite").then(load, alertError); }));
    }
    actions.appendChild(button("Remove", function () { confirming = agent.agentId; load(); }));
    return actions;
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "";
  }
  // The checks' findings in words: the problem, the state, the times, and the reconnect email.
  function healthCell(health) {
    var lines = [];
    if (health.problem) { lines.push(health.problem); }
    if (health.state) { lines.push(CHECK_STATES[health.state] || health.state.replace(/_/g, " ")); }
    if (health.lastSuccessAt) { lines.push("last OK " + when(health.lastSuccessAt)); }
    if (health.failingSince) { lines.push("failing since " + when(health.failingSince)); }
    if (health.nextCheckAt) { lines.push("next check " + when(health.nextCheckAt)); }
    if (health.passwordExpiresAt) { lines.push("password expires " + when(health.passwordExpiresAt)); }
    if (health.reconnectEmailSentAt) {
      lines.push((health.reconnectEmailPurpose === "password_expiry" ? "expiry warning" : "reconnect email") +
        " sent " + when(health.reconnectEmailSentAt));
    } else if (health.reconnectEmailRequestedAt) {
      lines.push("reconnect email on its way");
    }
    var td = cell("Health", "", "health");
    lines.forEach(function (line, i) {
      if (i > 0) { td.appendChild(document.createElement("br")); }
      td.appendChild(document.createTextNode(line));
    });
    return td;
  }

  function render(items) {
    tbody.textContent = "";
    if (!items.some(function (a) { return a.agentId === confirming; })) { confirming = null; }
    items.forEach(function (agent) {
      var tr = document.createElement("tr");
      tr.dataset.agentId = agent.agentId;
      tr.dataset.status = agent.status;
      tr.appendChild(cell("Name", agent.name));
      var email = cell("Email", "", "email");
      email.appendChild(address(agent.email));
      tr.appendChild(email);
      var status = cell("Status", statusLabel(agent), "status status-" + agent.status);
      status.title = agent.status + (agent.statusReason ? " (" + agent.statusReason + ")" : "");
      if (agent.status === "verified") {
        var tick = document.createElement("span");
        tick.className = "tick";
        tick.textContent = " ✔";
        tick.setAttribute("aria-label", "verified");
        status.appendChild(tick);
      }
      tr.appendChild(status);
      tr.appendChild(healthCell(agent.health || {}));
      tr.appendChild(actionsFor(agent));
      tbody.appendChild(tr);
    });
    document.getElementById("empty").hidden = items.length > 0;
  }
  function alertError(e) { document.getElementById("add-error").textContent = e.message; }
  function load() {
    var all = [];
    function page(next) {
      var query = "/agents?limit=100" + (filter ? "&status=" + encodeURIComponent(filter) : "");
      return api("GET", query + (next ? "&nextToken=" + encodeURIComponent(next) : "")).then(function (body) {
        all = all.concat(body.items);
        return body.nextToken ? page(body.nextToken) : all;
      });
    }
    return page(null).then(render, alertError);
  }
  document.getElementById("add-agent").addEventListener("submit", function (event) {
    event.preventDefault();
    var form = event.target;
    document.getElementById("add-error").textContent = "";
    var body = { name: form.name.value, email: form.email.value, type: form.type.value };
    if (form.inviterName.value.trim()) { body.inviterName = form.inviterName.value; }
    api("POST", "/agents", body)
      .then(function () { form.reset(); return load(); }, alertError);
  });
  document.getElementById("refresh").onclick = load;
  document.getElementById("status-filter").addEventListener("change", function (event) {
    filter = event.target.value;
    load();
  });
  load();
  window.setInterval(load, 2000);
})();
