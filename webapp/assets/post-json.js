// POST a JSON body with the page's CSRF token; returns the status and the JSON answer (or the status text).
export async function postJson(url, token, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": token, Accept: "application/json" },
    body: JSON.stringify(body),
  });
  let payload = {};
  try {
    payload = await response.json();
  } catch {
    payload = { message: response.statusText };
  }
  return { status: response.status, payload };
}
