// The visual diff of two versions: two bpmn-js viewers, the older one marking removed and changed elements,
// the newer one added and changed elements. The diff itself is computed on the server (engine.versions)
// and comes in a JSON script tag; the list next to the diagrams says the same in words.
import NavigatedViewer from "bpmn-js/lib/NavigatedViewer";

async function show(container, url, marks) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(response.statusText);
  const viewer = new NavigatedViewer({ container });
  await viewer.importXML(await response.text());
  const canvas = viewer.get("canvas");
  const registry = viewer.get("elementRegistry");
  for (const [ids, marker] of marks) {
    for (const id of ids) if (registry.get(id)) canvas.addMarker(id, marker);
  }
  canvas.zoom("fit-viewport");
  container.dataset.ready = "true";
  return viewer;
}

const root = document.querySelector("[data-diff]");
if (root) {
  const diff = JSON.parse(document.getElementById(root.dataset.diffId).textContent);
  const ids = (list) => list.map((e) => e.id);
  const older = root.querySelector("[data-diff-old]");
  const newer = root.querySelector("[data-diff-new]");
  Promise.all([
    show(older, older.dataset.url, [[ids(diff.removed), "diff-removed"], [ids(diff.changed), "diff-changed"]]),
    show(newer, newer.dataset.url, [[ids(diff.added), "diff-added"], [ids(diff.changed), "diff-changed"]]),
  ]).then(() => {
    root.dataset.ready = "true";
  }).catch(() => {
    root.querySelector("[data-diff-error]").hidden = false;
  });
}
