// A CommonJS loader for the browser test page (tests/it/browser.rs): the official SDK's ESM
// build imports three CommonJS packages (ajv, ajv-formats, content-type), which a browser cannot
// import. The import map points each at `/cjs.mjs?NAME`; this module then evaluates the package
// and its `require`s the way Node would, fetching each file with a synchronous XMLHttpRequest from
// the test server, which serves the npm peers under /nm/ and resolves paths the Node way
// (`.js`, `.json`, `index.js`, `package.json` "main") by redirecting. Test code only: it trusts
// what it loads.

const cache = (globalThis.__shadowcatCjs ??= new Map());

function fetchSync(url) {
  const xhr = new XMLHttpRequest();
  xhr.open("GET", url, false);
  xhr.send();
  if (xhr.status !== 200) throw new Error(`cjs.mjs: GET ${url}: HTTP ${xhr.status}`);
  return { url: xhr.responseURL || url, text: xhr.responseText };
}

function load(url) {
  const known = cache.get(url);
  if (known) return known.exports;
  const got = fetchSync(url);
  const seen = cache.get(got.url);
  if (seen) {
    cache.set(url, seen);
    return seen.exports;
  }
  const module = { exports: {} };
  cache.set(url, module);
  cache.set(got.url, module);
  if (got.url.endsWith(".json")) {
    module.exports = JSON.parse(got.text);
    return module.exports;
  }
  const require = (spec) =>
    load(spec.startsWith(".") ? new URL(spec, got.url).href : new URL(`/nm/${spec}`, got.url).href);
  const run = new Function("module", "exports", "require", `${got.text}\n//# sourceURL=${got.url}`);
  run(module, module.exports, require);
  return module.exports;
}

export default load(new URL(`/nm/${new URL(import.meta.url).search.slice(1)}`, import.meta.url).href);
