// The MSE console: a client of the platform's REST API on the same origin.
// Everything it shows is built with DOM nodes and textContent, never parsed
// as HTML, so names, reasons and logs are always shown as text. The API
// token lives in sessionStorage and goes out as a bearer header only.
"use strict";

const TOKEN_KEY = "mse-console-token";
const POLL_MS = 1500;

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,
  platform: null,
  timers: [],
};

// ---- small helpers ---------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function utc(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  return new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function timeLeft(seconds) {
  const left = seconds - Date.now() / 1000;
  if (left <= 0) return "expired";
  const minutes = Math.floor(left / 60);
  if (minutes >= 1440) return `in ${Math.floor(minutes / 1440)}d ${Math.floor((minutes % 1440) / 60)}h`;
  if (minutes >= 60) return `in ${Math.floor(minutes / 60)}h ${minutes % 60}m`;
  return `in ${Math.max(minutes, 1)}m`;
}

function appUrl(domain) {
  const port = state.platform ? state.platform.proxy_port : 443;
  return port === 443 ? `https://${domain}/` : `https://${domain}:${port}/`;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message ? `Error: ${message}` : "";
  box.hidden = !message;
}

function stopTimers() {
  for (const timer of state.timers) clearInterval(timer);
  state.timers = [];
}

function every(ms, fn) {
  state.timers.push(setInterval(fn, ms));
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, `the platform does not answer (${e.message})`);
  }
  const text = await response.text();
  if (response.status === 401) {
    let reason = "revoked or wrong";
    try {
      reason = JSON.parse(text).error || reason;
    } catch (_) {
      /* not JSON: keep the general reason */
    }
    signOut(`Your token was refused (${reason}): sign in again.`);
    throw new ApiError(401, "signed out");
  }
  if (!response.ok) {
    let message = `${method} ${path} answered ${response.status}`;
    try {
      message = JSON.parse(text).error || message;
    } catch (_) {
      /* not JSON: keep the status line */
    }
    throw new ApiError(response.status, message);
  }
  const type = response.headers.get("Content-Type") || "";
  return type.includes("application/json") ? JSON.parse(text) : text;
}

function page(title, ...content) {
  stopTimers();
  showError("");
  document.title = `${title} — MSE console`;
  const main = document.getElementById("main");
  main.replaceChildren(el("h1", { text: title }), ...content);
  main.focus();
}

function table(caption, headers, rows) {
  return el(
    "table",
    {},
    el("caption", { text: caption }),
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows),
  );
}

function dl(pairs) {
  return el(
    "dl",
    { class: "fields" },
    pairs.map(([key, value]) => [el("dt", { text: key }), el("dd", {}, value)]),
  );
}

function statusBadge(status) {
  return el("span", { class: `status status-${status}`, "data-status": status, text: status });
}

// ---- sign in and out -------------------------------------------------

function signInPage(notice) {
  document.getElementById("nav").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("who").textContent = "";
  const input = el("input", {
    id: "token",
    type: "password",
    autocomplete: "off",
    required: true,
    "aria-describedby": "token-help",
  });
  const form = el(
    "form",
    {
      id: "sign-in",
      onsubmit: async (event) => {
        event.preventDefault();
        state.token = input.value.trim();
        try {
          await start();
        } catch (e) {
          state.token = null;
          showError(e.status === 401 ? "The platform refused this token." : e.message);
        }
      },
    },
    el("label", { for: "token", text: "API token" }),
    input,
    el("p", {
      id: "token-help",
      class: "help",
      text: "The token you log in with (`mse login`). It stays in this tab's session storage until you sign out or close the tab.",
    }),
    el("button", { type: "submit", text: "Sign in" }),
  );
  page("Sign in", notice ? el("p", { role: "status", text: notice }) : null, form);
  input.focus();
}

function signOut(notice) {
  stopTimers();
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.me = null;
  if (location.hash !== "#/apps") history.replaceState(null, "", "#/apps");
  signInPage(notice || "Signed out.");
}

async function start() {
  state.me = await api("GET", "/me");
  // Kept for this tab only, once the platform accepted it.
  sessionStorage.setItem(TOKEN_KEY, state.token);
  state.platform = await api("GET", "/platform");
  document.getElementById("nav").hidden = false;
  document.getElementById("sign-out").hidden = false;
  document.getElementById("admin-nav").hidden = !state.me.is_admin;
  document.getElementById("who").textContent = `Signed in as ${state.me.name}${state.me.is_admin ? " (admin)" : ""}`;
  document.getElementById("simulation").hidden = state.platform.quote_provider !== "simulation";
  await route();
}

// ---- owner views -----------------------------------------------------

async function appsPage() {
  const all = el("input", { type: "checkbox", id: "show-all" });
  const project = el("select", { id: "project-filter" }, el("option", { value: "", text: "every project" }));
  const body = el("tbody", { id: "apps-body" });
  const count = el("p", { id: "apps-count", role: "status", "aria-live": "polite" });
  const controls = el(
    "div",
    { class: "controls" },
    el("label", { for: "project-filter", text: "Project " }),
    project,
    el("label", { for: "show-all" }, all, " show stopped and failed apps too"),
  );
  page(
    "Apps",
    controls,
    count,
    el(
      "table",
      { id: "apps" },
      el("caption", { text: "Your apps, newest first (live ones unless asked otherwise); updated as they change" }),
      el(
        "thead",
        {},
        el("tr", {}, ["Name", "Status", "Domain", "Expires", "Created"].map((h) => el("th", { scope: "col", text: h }))),
      ),
      body,
    ),
  );
  try {
    for (const p of await api("GET", "/projects")) project.append(el("option", { value: p.name, text: p.name }));
  } catch (e) {
    showError(e.message);
  }
  const refresh = async () => {
    try {
      const query = project.value ? `?project=${encodeURIComponent(project.value)}` : "";
      const apps = (await api("GET", `/apps${query}`)).filter(
        (a) => all.checked || ["spawning", "initializing", "running"].includes(a.status),
      );
      body.replaceChildren(
        ...apps.map((a) =>
          el(
            "tr",
            { "data-app": a.id },
            el("td", {}, el("a", { href: `#/apps/${encodeURIComponent(a.id)}`, text: a.name })),
            el("td", {}, statusBadge(a.status)),
            el("td", {}, el("a", { href: appUrl(a.domain_name), rel: "noopener noreferrer", text: a.domain_name })),
            el("td", { text: `${utc(a.expires_at)} (${timeLeft(a.expires_at)})` }),
            el("td", { text: utc(a.created_at) }),
          ),
        ),
      );
      count.textContent = apps.length === 0 ? "No app to show." : `${apps.length} app${apps.length === 1 ? "" : "s"}`;
      showError("");
    } catch (e) {
      if (e.status !== 401) showError(e.message);
    }
  };
  all.addEventListener("change", refresh);
  project.addEventListener("change", refresh);
  await refresh();
  every(POLL_MS, refresh);
}

function trustMode(app) {
  switch (app.certificate_origin) {
    case "self":
      return "zero trust: the node's RA-TLS certificate (verify it with mse verify)";
    case "acme":
      return "zero trust, browser-trusted: an ACME certificate whose key only the node holds";
    case "owner":
      return "owner: your own certificate, its key sent only to the verified node";
    case "operator":
      return "operator: the platform's certificate at the proxy (--untrusted-ssl)";
    default:
      return app.certificate_origin;
  }
}

function verifyLine(app) {
  const port = state.platform ? state.platform.proxy_port : 443;
  const target = port === 443 ? app.domain_name : `${app.domain_name}:${port}`;
  const fingerprint = app.fingerprint ? ` --fingerprint ${app.fingerprint}` : " --context context.mse --code DIR";
  return `mse verify ${target}${fingerprint}`;
}

async function appPage(id) {
  const fields = el("div", { id: "app-fields" });
  const log = el("pre", { id: "log", tabindex: "0", "aria-label": "The app's log", "aria-live": "off" });
  const follow = el("input", { type: "checkbox", id: "follow", checked: true });
  const stop = el("button", { type: "button", id: "stop", text: "Stop" });
  const remove = el("button", { type: "button", id: "remove", text: "Remove" });
  page(
    "App",
    fields,
    el("div", { class: "controls" }, stop, remove),
    el("h2", { text: "Log" }),
    el("label", { for: "follow" }, follow, " follow the log as it grows"),
    log,
  );
  let app = null;
  const show = async () => {
    try {
      app = await api("GET", `/apps/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status !== 401) showError(e.status === 404 ? "No such app (or not yours)." : e.message);
      return;
    }
    document.title = `${app.name} — MSE console`;
    document.querySelector("main h1").textContent = `App ${app.name}`;
    const live = ["spawning", "initializing", "running"].includes(app.status);
    stop.disabled = !live;
    remove.disabled = live;
    const rows = [
      ["name", app.name],
      ["project", app.project],
      ["status", [statusBadge(app.status), app.reason ? ` (${app.reason})` : ""]],
      ["domain", el("a", { href: appUrl(app.domain_name), rel: "noopener noreferrer", text: appUrl(app.domain_name) })],
      ["uuid", app.id],
      ["resource", app.resource],
      ["application", app.python_application],
      ["image", app.docker],
      ["healthcheck", app.healthcheck_endpoint],
      ["enclave size", app.enclave_size],
      ["created", utc(app.created_at)],
      ["expires", `${utc(app.expires_at)} (${timeLeft(app.expires_at)})`],
      ["certificate origin", app.certificate_origin],
      ["trust mode", trustMode(app)],
      ["fingerprint", app.fingerprint ? el("code", { text: app.fingerprint }) : "not reported yet"],
      ["sandbox", app.sandbox || "not reported yet"],
      ["limits", app.limits || "not reported yet"],
      ["node", app.node || "—"],
    ];
    if (app.certificate) {
      rows.push(["issuer", app.certificate.issuer], ["certificate expiry", app.certificate.not_after]);
      if (app.certificate.error) rows.push(["certificate error", app.certificate.error]);
    }
    rows.push([
      "verify it",
      el(
        "div",
        {},
        el("p", { text: "What an app user runs (with the fingerprint you give them):" }),
        el("code", { id: "verify-line", text: verifyLine(app) }),
        app.certificate_origin === "acme" || app.certificate_origin === "owner"
          ? el("p", {}, "or opens ", el("a", { href: appUrl(app.domain_name), rel: "noopener noreferrer", text: appUrl(app.domain_name) }), " in a browser")
          : null,
      ),
    ]);
    fields.replaceChildren(dl(rows));
  };
  let shown = "";
  const readLog = async () => {
    if (!follow.checked && shown) return;
    try {
      const text = await api("GET", `/apps/${encodeURIComponent(id)}/logs`);
      if (text !== shown) {
        shown = text;
        log.textContent = text;
        if (follow.checked) log.scrollTop = log.scrollHeight;
      }
    } catch (e) {
      if (e.status !== 401 && e.status !== 404) showError(e.message);
    }
  };
  stop.addEventListener("click", async () => {
    if (!app || !window.confirm(`Stop ${app.name} (${app.id})? A stopped app never runs again.`)) return;
    try {
      await api("POST", `/apps/${encodeURIComponent(id)}/stop`);
      await show();
    } catch (e) {
      showError(e.message);
    }
  });
  remove.addEventListener("click", async () => {
    if (!app || !window.confirm(`Remove ${app.name} (${app.id}) and its log?`)) return;
    try {
      await api("DELETE", `/apps/${encodeURIComponent(id)}`);
      location.hash = "#/apps";
    } catch (e) {
      showError(e.message);
    }
  });
  await show();
  await readLog();
  every(POLL_MS, show);
  every(1000, readLog);
}

async function projectsPage() {
  const name = el("input", { id: "project-name", required: true });
  const body = el("tbody");
  const refresh = async () => {
    const projects = await api("GET", "/projects");
    body.replaceChildren(
      ...projects.map((p) =>
        el("tr", {}, el("td", {}, el("a", { href: `#/apps`, text: p.name })), el("td", { text: utc(p.created_at) })),
      ),
    );
  };
  page(
    "Projects",
    table("Your projects", ["Name", "Created"], [body]),
    el(
      "form",
      {
        id: "new-project",
        onsubmit: async (event) => {
          event.preventDefault();
          try {
            await api("POST", "/projects", { name: name.value.trim() });
            name.value = "";
            await refresh();
          } catch (e) {
            showError(e.message);
          }
        },
      },
      el("h2", { text: "New project" }),
      el("label", { for: "project-name", text: "Name" }),
      name,
      el("button", { type: "submit", text: "Create" }),
    ),
  );
  await refresh();
}

async function tokensPage() {
  const name = el("input", { id: "token-name", required: true });
  const scope = el(
    "select",
    { id: "token-scope" },
    el("option", { value: "", text: "as this token's" }),
    el("option", { value: "read", text: "read (GET requests only)" }),
    el("option", { value: "deploy", text: "deploy" }),
    ...(state.me && state.me.is_admin ? [el("option", { value: "admin", text: "admin" })] : []),
  );
  const expiresIn = el("input", { id: "token-expires-in", type: "number", min: "1", step: "1" });
  const created = el("div", { id: "token-created", role: "status" });
  const body = el("tbody");
  const refresh = async () => {
    const tokens = await api("GET", "/tokens");
    body.replaceChildren(
      ...tokens.map((t) =>
        el(
          "tr",
          {},
          el("td", { text: t.name }),
          el("td", { text: t.scope }),
          el("td", { text: utc(t.created_at) }),
          el("td", { text: t.expires_at === null ? "when revoked" : utc(t.expires_at) }),
          el(
            "td",
            {},
            el("button", {
              type: "button",
              text: "Revoke",
              "aria-label": `Revoke token ${t.name}`,
              onclick: async () => {
                if (!window.confirm(`Revoke the token ${t.name}? Whoever uses it is refused from now on.`)) return;
                try {
                  await api("DELETE", `/tokens/${encodeURIComponent(t.id)}`);
                  await refresh();
                } catch (e) {
                  showError(e.message);
                }
              },
            }),
          ),
        ),
      ),
    );
  };
  page(
    "Tokens",
    table("Your tokens", ["Name", "Scope", "Created", "Expires", ""], [body]),
    el(
      "form",
      {
        id: "new-token",
        onsubmit: async (event) => {
          event.preventDefault();
          try {
            const request = { name: name.value.trim() };
            if (scope.value) request.scope = scope.value;
            if (expiresIn.value) request.expires_in = Number(expiresIn.value);
            const answer = await api("POST", "/tokens", request);
            name.value = "";
            expiresIn.value = "";
            created.replaceChildren(
              el("p", { text: "Your new token, shown this once: copy it now." }),
              el("code", { id: "new-token-secret", text: answer.token }),
            );
            await refresh();
          } catch (e) {
            showError(e.message);
          }
        },
      },
      el("h2", { text: "New token" }),
      el("label", { for: "token-name", text: "Name" }),
      name,
      el("label", { for: "token-scope", text: "Scope" }),
      scope,
      el("label", { for: "token-expires-in", text: "Expires in (seconds; empty: as this token)" }),
      expiresIn,
      el("button", { type: "submit", text: "Create" }),
    ),
    created,
  );
  await refresh();
}

// ---- operator views --------------------------------------------------

function cores(n) {
  return `${n} core${n === 1 ? "" : "s"}`;
}

async function usersPage() {
  const users = await api("GET", "/users");
  const toggle = (u) =>
    el("button", {
      type: "button",
      text: u.disabled ? "Enable" : "Disable",
      "aria-label": `${u.disabled ? "Enable" : "Disable"} user ${u.name}`,
      hidden: u.id === state.me.id,
      onclick: async () => {
        if (!u.disabled && !window.confirm(`Disable ${u.name}? Its tokens are refused at once and its live apps stop.`)) return;
        try {
          await api("POST", `/users/${encodeURIComponent(u.id)}/${u.disabled ? "enable" : "disable"}`);
          await usersPage();
        } catch (e) {
          showError(e.message);
        }
      },
    });
  page(
    "Users",
    table(
      "Every user and the resources granted to it",
      ["Name", "Admin", "Grants", "Created", "Disabled", ""],
      users.map((u) =>
        el(
          "tr",
          {},
          el("td", { text: u.name }),
          el("td", { text: u.is_admin ? "yes" : "no" }),
          el("td", { text: u.grants.length ? u.grants.join(", ") : "—" }),
          el("td", { text: utc(u.created_at) }),
          el("td", { text: u.disabled ? "yes" : "no" }),
          el("td", {}, toggle(u)),
        ),
      ),
    ),
  );
}

async function resourcesPage() {
  const resources = await api("GET", "/resources");
  page(
    "Resources",
    table(
      "Resources",
      ["Name", "Memory", "Cores", "Enclave", "Default hours", "Public", "Live apps at most"],
      resources.map((r) =>
        el(
          "tr",
          {},
          el("td", { text: r.name }),
          el("td", { text: `${r.memory_mb} MB` }),
          el("td", { text: r.cores }),
          el("td", { text: r.enclave_size }),
          el("td", { text: r.default_hours }),
          el("td", { text: r.public ? "yes" : "no" }),
          el("td", { text: r.max_live_apps ?? "no limit" }),
        ),
      ),
    ),
  );
}

async function catalogPage() {
  const catalog = await api("GET", "/catalog");
  const images = Array.isArray(catalog.images) ? catalog.images : Object.values(catalog.images || {});
  page(
    "Image catalog",
    el("p", {}, "Digest ", el("code", { text: catalog.digest })),
    table(
      "Approved images and their locked environments",
      ["Image", "Python", "Packages"],
      images.map((i) =>
        el(
          "tr",
          {},
          el("td", { text: i.image || i.reference || i.name || "" }),
          el("td", { text: i.python || "" }),
          el("td", { text: Array.isArray(i.packages) ? `${i.packages.length} pinned` : "" }),
        ),
      ),
    ),
  );
}

async function nodesPage() {
  const nodes = await api("GET", "/nodes");
  page(
    "Node hosts",
    table(
      "Every node: where it is, its lease, its capacity and what runs on it",
      ["Node", "Kind", "Address", "Live", "Lease until", "Capacity", "Used", "Apps", "Revoked"],
      nodes.map((n) =>
        el(
          "tr",
          {},
          el("td", { text: n.node }),
          el("td", { text: n.kind }),
          el("td", { text: n.address || "—" }),
          el("td", { text: n.live ? "yes" : "no" }),
          el("td", { text: utc(n.lease_until) }),
          el("td", { text: n.capacity ? `${n.capacity.memory_mb} MB, ${cores(n.capacity.cores)}` : "" }),
          el("td", { text: n.used ? `${n.used.memory_mb} MB, ${cores(n.used.cores)}` : "" }),
          el(
            "td",
            {},
            Array.isArray(n.apps) && n.apps.length
              ? n.apps.map((a) => el("div", {}, el("code", { text: a })))
              : "none",
          ),
          el("td", { text: n.revoked ? "REVOKED" : "no" }),
        ),
      ),
    ),
  );
}

async function platformPage() {
  const p = await api("GET", "/platform");
  const simulated = p.quote_provider === "simulation";
  page(
    "Platform",
    dl([
      ["base domain", p.base_domain],
      ["proxy port", String(p.proxy_port)],
      [
        "quote provider",
        simulated
          ? el("strong", { class: "simulation", text: "simulation — NO HARDWARE PROTECTION" })
          : p.quote_provider,
      ],
    ]),
  );
}

// ---- routing ---------------------------------------------------------

async function route() {
  if (!state.token) return signInPage();
  if (!state.me) return start();
  const hash = location.hash || "#/apps";
  const admin = (view) => (state.me.is_admin ? view() : page("Not allowed", el("p", { text: "This view is for administrators." })));
  try {
    if (hash.startsWith("#/apps/")) return await appPage(decodeURIComponent(hash.slice("#/apps/".length)));
    switch (hash) {
      case "#/projects":
        return await projectsPage();
      case "#/tokens":
        return await tokensPage();
      case "#/admin/users":
        return await admin(usersPage);
      case "#/admin/resources":
        return await admin(resourcesPage);
      case "#/admin/catalog":
        return await admin(catalogPage);
      case "#/admin/nodes":
        return await admin(nodesPage);
      case "#/platform":
        return await platformPage();
      default:
        return await appsPage();
    }
  } catch (e) {
    if (e.status !== 401) showError(e.message);
  }
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("sign-out").addEventListener("click", () => signOut());
  route().catch((e) => {
    if (e.status === 401) return;
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    signInPage(e.message);
  });
});
