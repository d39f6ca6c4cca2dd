// The form editor of the modeller: bpmn.io's form-js editor on a form of a draft (Camunda Forms JSON).
// Data in data- attributes and a JSON script tag (no inline script: CSP). Saving stores the form in the
// draft; the preview is rendered by the server the way the inbox renders it.
import { FormEditor } from "@bpmn-io/form-js-editor";
import "./modeller-forms.css";
import { postJson as post } from "./post-json.js";

async function open(root) {
  const data = root.dataset;
  const schema = JSON.parse(document.getElementById(data.schemaId).textContent);
  const status = document.getElementById(data.statusId);
  const editor = new FormEditor({ container: root.querySelector("[data-form-canvas]") });
  await editor.importSchema(schema);
  let revision = Number(data.revision);
  root.dataset.ready = "true";
  window.fallwerkFormEditor = editor;
  const say = (message, kind) => {
    status.textContent = message;
    status.dataset.kind = kind;
  };
  const save = async (overwrite = false) => {
    const { status: code, payload } = await post(data.saveUrl, data.csrf, {
      form: editor.saveSchema(), revision, overwrite,
    });
    if (code === 409 && payload.code === "draft_conflict" && !overwrite) {
      if (window.confirm(`${payload.message}\n\nTrotzdem speichern und die andere Fassung überschreiben?`)) return save(true);
      throw new Error(payload.message);
    }
    if (code !== 200) throw new Error(payload.message || code);
    revision = payload.revision;
    root.dataset.revision = String(revision);
    return payload;
  };
  document.querySelector("[data-form-save]").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const payload = await save();
      say(payload.summary, payload.ok ? "success" : "error");
      const list = document.getElementById(data.findingsId);
      list.replaceChildren(...payload.findings.map((f) => {
        const item = document.createElement("li");
        item.className = `finding finding-${f.severity}`;
        item.textContent = `${f.severity === "error" ? "Fehler" : "Hinweis"}: ${f.element_id} – ${f.message}`;
        return item;
      }));
    } catch (error) {
      say(`Das hat nicht geklappt: ${error.message || error}`, "error");
    } finally {
      button.disabled = false;
    }
  });
}

const root = document.querySelector("[data-form-editor]");
if (root) {
  open(root).catch((error) => {
    const status = document.getElementById(root.dataset.statusId);
    if (status) status.textContent = `Der Formular-Editor konnte nicht geladen werden: ${error.message || error}`;
  });
}
