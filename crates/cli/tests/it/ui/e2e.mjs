// End-to-end test of berth's web UI in headless Chromium (Playwright),
// with an axe-core accessibility check of every page it visits.
//
//   node e2e.mjs URL
//
// Environment (set by crates/cli/tests/it/ui_browser.rs):
//   E2E_OWNER, E2E_OWNER_PASSWORD   the user owning the private image
//   E2E_OTHER, E2E_OTHER_PASSWORD   a user who must not see it
//   E2E_ADMIN_PASSWORD              the site admin's password
//   E2E_ORG                         an organisation the site admin founded
//   E2E_REPO, E2E_TAG               the private image (an index)
//   E2E_SBOM_IMAGE                  an image (REPO:TAG) with an SBOM referrer
//                                   (berth sbom --attach) and a signature
//   E2E_SBOM_PACKAGE                a package that SBOM lists
//   E2E_SIGNING_KEY                 the trusted key that verifies the signature
//   E2E_POLICY, E2E_PULL_DIR        skopeo's policy file and a scratch dir
//   E2E_SCREENSHOTS                 where screenshots go
//   CHROMIUM                        the browser binary
// Exits non-zero, saying why, on the first failure.
import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");
const axe = require("axe-core");

const base = process.argv[2];
const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const owner = env("E2E_OWNER");
const other = env("E2E_OTHER");
const repo = env("E2E_REPO");
const tag = env("E2E_TAG");
const shots = env("E2E_SCREENSHOTS");
const host = new URL(base).host;
mkdirSync(shots, { recursive: true });

function check(ok, message) {
  if (!ok) throw new Error(message);
}

const checked = new Set();
// axe-core in the page (evaluated through the DevTools protocol, which the
// page's CSP does not govern); serious and critical violations fail.
async function accessible(page, label) {
  await page.evaluate(axe.source);
  const result = await page.evaluate(() =>
    axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of bad) {
    console.error(`axe ${label}: ${v.impact} ${v.id}: ${v.help}`);
    for (const n of v.nodes.slice(0, 3)) console.error(`   ${n.target.join(" ")}: ${n.failureSummary}`);
  }
  check(bad.length === 0, `${label}: ${bad.length} serious or critical accessibility violations`);
  checked.add(label);
}

// Both themes: axe runs on each.
async function bothThemes(page, label, shot) {
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    await accessible(page, `${label} (${scheme})`);
    if (shot) await page.screenshot({ path: join(shots, `${shot}-${scheme}.png`), fullPage: true });
  }
  await page.emulateMedia({ colorScheme: "light" });
}

function skopeoPull(token) {
  const dir = join(env("E2E_PULL_DIR"), `pull-${Date.now()}`);
  rmSync(dir, { recursive: true, force: true });
  try {
    execFileSync("skopeo", ["--policy", env("E2E_POLICY"), "copy", "--src-tls-verify=false",
      "--src-creds", `${owner}:${token}`, `docker://${host}/${repo}:${tag}`, `oci:${dir}:pulled`],
      { stdio: "pipe", timeout: 60000 });
    return true;
  } catch (e) {
    return false;
  }
}

async function signIn(page, user, password) {
  await page.goto(`${base}/ui/login`);
  await bothThemes(page, "sign-in", "login");
  await page.getByLabel("User name").fill(user);
  await page.getByLabel("Password or access token").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${base}/ui/`);
  check((await page.textContent("header")).includes(`Signed in as ${user}`), `not signed in as ${user}`);
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const cspErrors = [];
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy|Refused to/.test(m.text())) cspErrors.push(m.text());
  });
  page.on("request", (r) => check(r.url().startsWith(base), `a request left berth: ${r.url()}`));

  // The owner signs in, finds the image, reads its layers.
  await signIn(page, owner, env("E2E_OWNER_PASSWORD"));
  await bothThemes(page, "start page", "home");
  await page.getByLabel("Search the repositories you can read").fill(repo.split("/").pop());
  await page.getByRole("button", { name: "Search" }).click();
  await accessible(page, "search results");
  await page.getByRole("link", { name: repo, exact: true }).first().click();
  await page.waitForURL(`${base}/ui/repo/${repo}`);
  check(await page.getByRole("link", { name: tag, exact: true }).isVisible(), "the tag is not listed");
  check((await page.textContent("table.tags")).includes("linux/amd64"), "platforms are not listed");
  check((await page.textContent(".pull")).includes(`docker pull ${host}/${repo}:${tag}`), "no pull command");
  await bothThemes(page, "repository", "repository");
  await page.getByRole("link", { name: tag, exact: true }).click();
  await page.waitForURL(`${base}/ui/repo/${repo}:${tag}`);
  const layers = await page.textContent("table.layers");
  check(/berth test layer of 2048 bytes/.test(layers), `no created_by line among the layers: ${layers}`);
  check((await page.locator("table.layers tbody tr").count()) === 2, "the image has two layers");
  check((await page.textContent("body")).includes("Not scanned yet"), "no scan state");
  await bothThemes(page, "image", "image");
  await page.getByRole("link", { name: "linux/arm64" }).click();
  check((await page.getAttribute("nav.platforms a[aria-current]", "href")).includes("linux/arm64"), "platform switch");
  await accessible(page, "image, second platform");

  // The image with referrers: the SBOM's packages (collapsed, opened
  // with the keyboard) and the key that verified its signature.
  await page.goto(`${base}/ui/repo/${env("E2E_SBOM_IMAGE")}`);
  const refs = page.locator("section[aria-labelledby=ref-h]");
  const sbom = refs.locator("li.referrer", { has: page.locator("h3", { hasText: "SBOM" }) });
  check((await sbom.count()) === 1, "no SBOM among the referrers");
  const details = sbom.locator("details.packages");
  if ((await details.getAttribute("open")) === null) {
    await details.locator("summary").focus();
    await page.keyboard.press("Enter");
  }
  const pkg = sbom.getByRole("cell", { name: env("E2E_SBOM_PACKAGE"), exact: true }).first();
  check(await pkg.isVisible(), `the SBOM does not list ${env("E2E_SBOM_PACKAGE")}`);
  check(/pkg:deb\//.test(await sbom.locator("table.packages").textContent()), "the SBOM's packages have no purl");
  const sig = refs.locator("li.referrer", { has: page.locator("h3", { hasText: "Signature" }) });
  const sigText = (await sig.first().textContent()).replace(/\s+/g, " ");
  check(sigText.includes(`verified by key ${env("E2E_SIGNING_KEY")}`), `the signature's key is not shown: ${sigText}`);
  await refs.scrollIntoViewIfNeeded();
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    await accessible(page, `image referrers (${scheme})`);
    await refs.screenshot({ path: join(shots, `referrers-${scheme}.png`) });
  }
  await page.emulateMedia({ colorScheme: "light" });

  await page.goto(`${base}/ui/ns/${owner}`);
  await bothThemes(page, "namespace", "namespace");

  // The namespace's rules: the plan follows the policy as it is typed
  // (the script posts it), then the policy is saved; a protected tag.
  await page.getByRole("link", { name: "Retention policy, tag rules and quota" }).click();
  await page.waitForURL(`${base}/ui/ns/${owner}/settings`);
  await page.getByLabel("Policy (TOML)").fill(
    '[[rule]]\nname = "drop-v"\ntags = ["v*"]\ndelete = { always = true }\n');
  await page.waitForFunction(() => document.getElementById("plan").textContent.includes("tag v1"));
  check((await page.textContent("#plan")).includes("drop-v"), "the live plan names the rule");
  await page.getByRole("button", { name: "Save the policy" }).click();
  await page.waitForURL(`${base}/ui/ns/${owner}/settings`);
  check((await page.inputValue("#policy")).includes("drop-v"), "the policy is not saved");
  await page.getByLabel(/^Tags \(a glob/).fill("latest");
  await page.getByRole("button", { name: "Add the rule" }).click();
  await page.waitForURL(/settings/);
  check((await page.textContent("section[aria-labelledby=rules-h] table")).includes("latest"),
    "the tag rule is not listed");
  await bothThemes(page, "namespace rules", "rules");

  // A token: created, shown once, pulls; revoked, pulls no more.
  await page.getByRole("link", { name: "Tokens" }).click();
  await bothThemes(page, "tokens", null);
  await page.getByLabel("Name", { exact: true }).fill("e2e-pull");
  await page.getByRole("button", { name: "Create token" }).click();
  const token = (await page.textContent("#new-token")).trim();
  check(token.startsWith("berth_pat_"), `no token shown: ${token}`);
  await bothThemes(page, "token created", "tokens");
  check(skopeoPull(token), "skopeo could not pull with the new token");
  await page.getByRole("button", { name: /Revoke token e2e-pull/ }).click();
  await page.waitForURL(`${base}/ui/tokens`);
  check((await page.textContent("table")).includes("revoked"), "the token is not shown revoked");
  check(!skopeoPull(token), "skopeo still pulls with the revoked token");

  // A forged form (no CSRF secret) from this signed-in browser: 403.
  const forged = await page.request.post(`${base}/ui/tokens`, { form: { name: "forged", scope: "pull" }, maxRedirects: 0 });
  check(forged.status() === 403, `a forged form got ${forged.status()}`);

  // Sign out: back to the sign-in page, and the tokens page needs it.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(`${base}/ui/login`);
  await page.goto(`${base}/ui/tokens`);
  check(page.url() === `${base}/ui/login`, `signed out, the tokens page is ${page.url()}`);

  // Another user: the private repository is neither found nor shown.
  const second = await (await browser.newContext()).newPage();
  await signIn(second, other, env("E2E_OTHER_PASSWORD"));
  await second.goto(`${base}/ui/?q=${encodeURIComponent(repo.split("/").pop())}`);
  check(!(await second.textContent("main")).includes(repo), "the other user finds the private repository");
  const direct = await second.goto(`${base}/ui/repo/${repo}`);
  check(direct.status() === 404, `the other user gets ${direct.status()} for the private repository`);
  await accessible(second, "not found");
  const forgedOut = await second.request.post(`${base}/ui/logout`, { form: {}, maxRedirects: 0 });
  check(forgedOut.status() === 403, `a forged sign-out got ${forgedOut.status()}`);
  await accessible(second, "start page of the other user");
  const rules = await second.goto(`${base}/ui/ns/${owner}/settings`);
  check(rules.status() === 403, `the other user gets ${rules.status()} for the namespace's rules`);
  await accessible(second, "not allowed");
  // Nor the admin pages.
  for (const path of ["/ui/admin/users", "/ui/admin/orgs"]) {
    const refused = await second.goto(`${base}${path}`);
    check(refused.status() === 403, `a user who is not a site admin gets ${refused.status()} for ${path}`);
    check(!(await second.textContent("main")).includes("Create the"), `${path} shows its forms to a non-admin`);
  }
  await accessible(second, "admin page refused");

  // The site admin's page.
  const admin = await (await browser.newContext()).newPage();
  await signIn(admin, "admin", env("E2E_ADMIN_PASSWORD"));
  await admin.getByRole("link", { name: "Users" }).click();
  await bothThemes(admin, "users", null);
  check((await admin.textContent("table")).includes(other), "the users page lists the users");
  // A user created through the form; the same name again is refused in
  // place, saying what to do; then disabled with its row's button.
  const createUser = async (name) => {
    await admin.getByLabel("Name", { exact: true }).fill(name);
    await admin.getByLabel("Password", { exact: true }).fill("e2e-carol-secret");
    await admin.getByLabel("Site administrator").check();
    await admin.getByRole("button", { name: "Create the user" }).click();
    await admin.waitForLoadState();
  };
  await createUser("carol");
  check((await admin.textContent("[role=status]")).includes("User carol created"), "no confirmation of the new user");
  check((await admin.textContent("table.users")).includes("carol"), "the new user is not listed");
  await createUser("carol");
  check((await admin.textContent("[role=alert]")).includes("choose another name"), "a taken name is not refused in place");
  await accessible(admin, "users, a name refused");
  await admin.getByRole("button", { name: "Disable carol" }).click();
  await admin.waitForLoadState();
  const carolRow = admin.locator("table.users tr", { hasText: "carol" });
  check((await carolRow.textContent()).includes("disabled"), "carol is not shown disabled");
  await bothThemes(admin, "users, carol disabled", "users");
  // An organisation founded through the form: its page follows, and the
  // list shows it with its one member.
  await admin.getByRole("link", { name: "Organisations" }).click();
  await admin.getByLabel("Name", { exact: true }).fill("e2e-org");
  await admin.getByRole("button", { name: "Create the organisation" }).click();
  await admin.waitForURL(`${base}/ui/org/e2e-org`);
  check((await admin.textContent("h1")).includes("e2e-org"), "the new organisation's page is not shown");
  await admin.getByRole("link", { name: "Organisations" }).click();
  const orgRow = admin.locator("table.orgs tr", { has: admin.getByRole("link", { name: "e2e-org", exact: true }) });
  check((await orgRow.locator("td.num").first().textContent()).trim() === "1", "the new organisation has not one member");
  await bothThemes(admin, "organisations", "orgs");
  await admin.getByRole("link", { name: "Audit log" }).click();
  check((await admin.textContent("table")).includes("login"), "the audit log shows the sign-ins");
  await admin.getByLabel("Actor").fill(other);
  await admin.getByRole("button", { name: "Filter" }).click();
  await admin.waitForURL(/actor=/);
  await bothThemes(admin, "audit log", "audit");
  await admin.getByRole("link", { name: "Storage" }).click();
  check((await admin.textContent("table")).includes(owner), "the storage page lists the namespaces");
  await bothThemes(admin, "storage", "usage");
  await admin.goto(`${base}/ui/ns/${owner}/settings`);
  await admin.getByLabel("Limit").fill("2");
  await admin.getByRole("button", { name: "Set the quota" }).click();
  await admin.waitForURL(/settings/);
  check((await admin.textContent("main")).includes("of 2.0 GB used"), "the quota is not set");
  await accessible(admin, "namespace rules, site admin");

  // An organisation (created through the API by the test): a robot, and
  // a token for it shown once.
  await admin.goto(`${base}/ui/org/${env("E2E_ORG")}`);
  await admin.getByLabel(/^New robot's name/).fill("ci");
  await admin.getByRole("button", { name: "Create the robot" }).click();
  await admin.waitForURL(`${base}/ui/org/${env("E2E_ORG")}`);
  await admin.getByRole("button", { name: `New token for ${env("E2E_ORG")}+ci` }).click();
  check((await admin.textContent("#new-token")).trim().startsWith("berth_"), "no robot token shown");
  await bothThemes(admin, "organisation", "org");

  check(cspErrors.length === 0, `CSP violations: ${cspErrors.join("; ")}`);
  console.log(`ok: ${checked.size} page states passed axe-core; screenshots in ${shots}`);
} catch (e) {
  failed = true;
  console.error(`e2e failed: ${e.stack || e}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
