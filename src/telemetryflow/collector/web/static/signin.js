// Sign-in page: say when a key was refused, and come back to the page asked for.
const query = new URLSearchParams(location.search);
document.getElementById("failed").hidden = query.get("failed") !== "1";
const next = query.get("next") || (location.pathname.startsWith("/ui/") &&
  location.pathname !== "/ui/signin" ? location.pathname + location.search : "/ui/traces");
document.getElementById("next").value = next;
document.getElementById("key").focus();
