// The diagram view: bpmn-js's NavigatedViewer (bundled by esbuild into static/dist/diagram.js).
// Reads the BPMN XML of the case's version and marks completed and active elements.
import NavigatedViewer from "bpmn-js/lib/NavigatedViewer";

async function show(container) {
  const response = await fetch(container.dataset.diagramUrl, { credentials: "same-origin" });
  if (!response.ok) {
    container.textContent = container.dataset.errorText || "Das Diagramm konnte nicht geladen werden.";
    return;
  }
  const viewer = new NavigatedViewer({ container });
  await viewer.importXML(await response.text());
  const canvas = viewer.get("canvas");
  const registry = viewer.get("elementRegistry");
  const mark = (ids, marker) => ids.split(",").filter(Boolean).forEach((id) => {
    if (registry.get(id)) canvas.addMarker(id, marker);
  });
  mark(container.dataset.completed || "", "done");
  mark(container.dataset.active || "", "active");
  canvas.zoom("fit-viewport");
}

document.querySelectorAll("[data-diagram-url]").forEach((container) => {
  show(container).catch(() => {
    container.textContent = "Das Diagramm konnte nicht angezeigt werden.";
  });
});
