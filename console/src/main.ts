// The opsloop admin console: Firebase Auth sign-in, live Firestore views, actions through the callables.
import { initializeApp, type FirebaseOptions } from "firebase/app";
import {
  connectAuthEmulator, getAuth, GoogleAuthProvider, onAuthStateChanged, signInWithEmailAndPassword,
  signInWithPopup, signOut, type User,
} from "firebase/auth";
import { connectFirestoreEmulator, getFirestore, type Firestore } from "firebase/firestore";
import { connectFunctionsEmulator, getFunctions, httpsCallable, type Functions } from "firebase/functions";

import { h, replace } from "./dom";
import { VIEWS, type Ctx } from "./views";

interface Emulators {
  auth?: { host: string; port: number };
  firestore?: { host: string; port: number };
  functions?: { host: string; port: number };
}

/** Firebase Hosting serves the app's config at /__/firebase/init.json; its emulator also names the running
 *  emulators in /__/firebase/init.js?useEmulator=true (``var firebaseEmulators = {...}``; deployed, that
 *  variable is undefined). So `firebase emulators:start` needs no config of ours. */
async function loadConfig(): Promise<{ options: FirebaseOptions; emulators: Emulators | null }> {
  const init = await fetch("/__/firebase/init.json", { cache: "no-store" });
  if (!init.ok) throw new Error("no Firebase config at /__/firebase/init.json: serve the console with Firebase Hosting");
  const options = (await init.json()) as FirebaseOptions;
  const js = await fetch("/__/firebase/init.js?useEmulator=true", { cache: "no-store" }).then((r) => r.text()).catch(() => "");
  const found = /var firebaseEmulators = (\{[\s\S]*?\n\});/.exec(js);
  return { options, emulators: found ? (JSON.parse(found[1]) as Emulators) : null };
}

const root = document.getElementById("app") as HTMLElement;
const status = document.getElementById("status") as HTMLElement;

function signInPage(auth: ReturnType<typeof getAuth>, emulated: boolean): HTMLElement {
  const error = h("p", { class: "error", role: "alert" });
  const email = h("input", { id: "email", type: "email", autocomplete: "username", required: true }) as HTMLInputElement;
  const password = h("input", { id: "password", type: "password", autocomplete: "current-password", required: true }) as HTMLInputElement;
  const form = h("form", {
    class: "signin",
    onsubmit: (ev: Event) => {
      ev.preventDefault();
      error.textContent = "";
      signInWithEmailAndPassword(auth, email.value, password.value).catch((e: { code?: string; message?: string }) => {
        error.textContent = `Sign-in failed: ${e.code === "auth/invalid-credential" || e.code === "auth/wrong-password"
          || e.code === "auth/user-not-found" ? "wrong email or password" : (e.message ?? String(e))}`;
      });
    },
  },
    h("h1", {}, "opsloop console"),
    h("p", {}, "Sign in as an operator (role admin)."),
    h("label", { for: "email" }, "Email"), email,
    h("label", { for: "password" }, "Password"), password,
    h("button", { type: "submit" }, "Sign in"),
    emulated ? null : h("button", {
      type: "button", class: "secondary",
      onclick: () => { signInWithPopup(auth, new GoogleAuthProvider()).catch((e: Error) => { error.textContent = e.message; }); },
    }, "Sign in with Google"),
    error);
  return form;
}

function notAdminPage(user: User, auth: ReturnType<typeof getAuth>): HTMLElement {
  return h("section", { class: "refused" },
    h("h1", {}, "Not an admin"),
    h("p", {}, `You are signed in as ${user.email ?? user.uid}, which has no admin role. `,
      "The console is for operators whose token carries role \"admin\" (set with the Admin SDK: ",
      h("code", {}, "auth.set_custom_user_claims(uid, {\"role\": \"admin\"})"), ")."),
    h("button", { type: "button", onclick: () => void signOut(auth) }, "Sign out"));
}

/** Shows the signed-in admin's console; returns what ends it (the open view's listeners). */
function shell(ctx: Ctx, user: User, auth: ReturnType<typeof getAuth>): () => void {
  const nav = h("nav", { "aria-label": "Views" },
    h("ul", {}, VIEWS.map((v) => h("li", {}, h("a", { href: `#/${v.id}`, id: `nav-${v.id}` }, v.title)))));
  const main = h("main", { id: "view", tabindex: "-1" });
  const header = h("header", {},
    h("span", { class: "brand" }, "opsloop"),
    h("span", { class: "who" }, user.email ?? user.uid),
    h("button", { type: "button", class: "secondary", onclick: () => void signOut(auth) }, "Sign out"));
  replace(root, header, nav, main);
  let stop: (() => void) | null = null;
  const route = (): void => {
    const id = location.hash.replace(/^#\//, "") || VIEWS[0].id;
    const view = VIEWS.find((v) => v.id === id) ?? VIEWS[0];
    if (stop) stop();
    for (const v of VIEWS) {
      const a = document.getElementById(`nav-${v.id}`);
      if (a) { if (v.id === view.id) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current"); }
    }
    document.title = `${view.title} · opsloop`;
    main.replaceChildren();
    stop = view.mount(main, ctx);
  };
  window.onhashchange = route;
  route();
  return () => { window.onhashchange = null; if (stop) stop(); stop = null; };
}

async function start(): Promise<void> {
  const { options, emulators } = await loadConfig();
  const app = initializeApp(options);
  const auth = getAuth(app);
  const db: Firestore = getFirestore(app);
  const functions: Functions = getFunctions(app, "us-central1");
  if (emulators) {
    if (emulators.auth) connectAuthEmulator(auth, `http://${emulators.auth.host}:${emulators.auth.port}`, { disableWarnings: true });
    if (emulators.firestore) connectFirestoreEmulator(db, emulators.firestore.host, emulators.firestore.port);
    if (emulators.functions) connectFunctionsEmulator(functions, emulators.functions.host, emulators.functions.port);
    status.textContent = `emulators: ${Object.keys(emulators).join(", ")}`;
  }
  const call = async (name: string, data: Record<string, unknown>): Promise<Record<string, unknown>> => {
    const result = await httpsCallable(functions, name)({ ...data, via: "admin-ui" });
    return result.data as Record<string, unknown>;
  };
  let end: (() => void) | null = null;
  let generation = 0;  // a sign-out while a token is being read must not open the console afterwards
  onAuthStateChanged(auth, (user) => {
    generation += 1;
    const mine = generation;
    if (end) { end(); end = null; }
    if (!user) {
      replace(root, signInPage(auth, emulators !== null));
      return;
    }
    void user.getIdTokenResult().then((token) => {
      if (mine !== generation) return;
      if (token.claims.role !== "admin") {
        replace(root, notAdminPage(user, auth));
        return;
      }
      end = shell({ db, call, user }, user, auth);
    });
  });
}

start().catch((e: Error) => {
  replace(root, h("p", { class: "error", role: "alert" }, `The console could not start: ${e.message}`));
});
