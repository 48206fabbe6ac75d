// Runs the API reference script, which the service serves in parts: behind an ALB, a Lambda
// function's response must stay under 1 MB, and the script is larger. Each part is fetched
// with its own Subresource Integrity hash (the browser refuses a part that differs), the
// parts are joined, and the page's CSP runs the joined script only if its SHA-384 is the
// pinned script's.
(() => {
  const loader = document.currentScript;
  const parts = JSON.parse(loader.dataset.parts);
  const fetchPart = ([src, integrity]) =>
    fetch(src, { integrity }).then((response) => {
      if (!response.ok) {
        throw new Error(`${src}: HTTP ${response.status}`);
      }
      return response.blob();
    });
  Promise.all(parts.map(fetchPart))
    // Joined as bytes, decoded once: a character is never cut in two.
    .then((blobs) => new Blob(blobs).text())
    .then((text) => {
      const script = document.createElement("script");
      script.textContent = text;
      document.body.append(script);
    })
    .catch((error) => console.error("API reference script:", error));
})();
