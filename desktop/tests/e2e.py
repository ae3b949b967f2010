#!/usr/bin/python3
"""Drives the real window through AT-SPI with dogtail, as a person would, in French.

Run by e2e.rs inside a fresh session bus, with DISPLAY (Xvfb), DBUS_SYSTEM_BUS_ADDRESS (the
private system bus where the real postecoled runs), APP (the binary), MAILDIR (where aiosmtpd
saves each mail), SHOTS (where each step's screenshot goes), PDF (a file to attach), CSV (the
families of a merge, beside the PDF, one of them with a wrong address) and STAFF (a Unix user
to tick). Exits non-zero, naming the step, at the first thing not seen.
"""

import email
import email.policy
import glob
import os
import re
import subprocess
import sys
import time

from dogtail.config import config

# The session bus is new: nobody has switched the toolkit's accessibility setting on.
config.checkForA11y = False
config.logDebugToFile = False
config.actionDelay = 0.3
config.defaultDelay = 0.2

import pyatspi  # noqa: E402
from dogtail import rawinput  # noqa: E402
from dogtail.tree import root  # noqa: E402

SHOTS = os.environ["SHOTS"]
MAILDIR = os.environ["MAILDIR"]
APP_NAME = os.path.basename(os.environ["APP"])
step = 0


def log(*args):
    print("e2e:", *args, flush=True)


def dump(node, out, depth=0):
    try:
        actions = ",".join(node.actions.keys()) if node.actions else ""
        out.write("  " * depth + f"[{node.roleName}] {node.name!r} {actions}\n")
        for child in node.children:
            dump(child, out, depth + 1)
    except Exception as e:  # a node that went away while walking
        out.write("  " * depth + f"<gone: {e}>\n")


def fail(message):
    log("FAILED:", message)
    shot("failure", [])
    dump_tree()
    sys.exit(1)


def dump_tree():
    for a in root.applications():
        if a.name == APP_NAME:
            with open(os.path.join(SHOTS, "tree.txt"), "w") as out:
                dump(a, out)


def shot(name, expect):
    """Saves the screen as NN-name.png; OCR must read each word of `expect` on it."""
    global step
    step += 1
    time.sleep(0.6)  # let the last frame be drawn
    path = os.path.join(SHOTS, f"{step:02d}-{name}.png")
    subprocess.run(["import", "-window", "root", path], check=True)
    log("screenshot", path)
    if not expect:
        return
    # Twice the size reads far better; OCR still drops a letter now and then, so a phrase counts
    # as shown when most of its words are read.
    big = subprocess.run(["convert", path, "-resize", "200%", "png:-"], check=True, capture_output=True).stdout
    text = subprocess.run(
        ["tesseract", "stdin", "-", "-l", "fra", "--psm", "11"], input=big, check=True, capture_output=True
    ).stdout.decode()
    with open(path[:-4] + ".txt", "w") as f:
        f.write(text)
    seen = set(re.findall(r"[\w@.'-]+", text.lower()))
    for phrase in expect:
        words = [w for w in re.findall(r"[\w@.'-]+", phrase.lower()) if len(w) > 2] or [phrase.lower()]
        found = sum(w in seen for w in words)
        if found * 4 < len(words) * 3:
            log("OCR read:", " ".join(text.split()))
            fail(f"the screenshot {path} does not show {phrase!r}")


def nodes(base, pred):
    return base.findChildren(pred)


def wait(what, find, timeout=20):
    start = time.time()
    while time.time() - start < timeout:
        try:
            found = find()
        except Exception:  # the tree changes under our feet while pages are rebuilt
            found = None
        if found:
            return found
        time.sleep(0.25)
    fail(f"timed out waiting for {what}")


def app():
    return wait(
        "the application on the accessibility bus",
        lambda: next((a for a in root.applications() if a.name == APP_NAME), None),
    )


def named(name, role=None, base=None):
    def find():
        found = nodes(
            base or app(),
            lambda n: n.name == name and (role is None or n.roleName == role),
        )
        return found[-1] if found else None

    return wait(f"{role or 'node'} {name!r}", find)


def containing(text, base=None):
    """A node whose name holds `text` (labels are named by their text)."""
    return wait(
        f"text {text!r}",
        lambda: next(iter(nodes(base or app(), lambda n: text in (n.name or ""))), None),
    )


def absent(text, base=None):
    return not nodes(base or app(), lambda n: text in (n.name or ""))


def page_of(heading):
    """The container of a page, found from its heading (hidden pages stay in the tree)."""
    return named(heading, "label").parent


def click(name, base=None, role="push button"):
    node = named(name, role, base)
    node.doActionNamed("click")
    return node


def tick(name, base=None):
    node = wait(
        f"check box or radio button {name!r}",
        lambda: next(iter(nodes(base or app(), lambda n: n.name == name and n.roleName in ("check box", "toggle button", "switch", "push button"))), None),
    )
    if not is_on(node):
        actions = node.actions or {}
        if "toggle" in actions or "click" in actions:
            node.doActionNamed("toggle" if "toggle" in actions else "click")
        else:
            # GTK 4.8 gives check boxes and switches no action: click them with the pointer.
            node.click()
    wait(f"{name!r} ticked", lambda: is_on(node))


def is_on(node):
    states = node.getState()
    return states.contains(pyatspi.STATE_CHECKED) or states.contains(pyatspi.STATE_PRESSED)


def text_of(node):
    # GTK 4.8 answers getText(0, -1) with nothing: ask for the exact length.
    t = node.queryText()
    return t.getText(0, t.characterCount)


def type_into(name, value, base=None):
    node = named(name, "text", base)
    node.text = value
    wait(f"{name!r} to hold what was typed", lambda: text_of(node) == value)


def newest_code(address, after=0):
    """The code of the newest verification mail to `address` beyond the first `after` mails."""

    def find():
        paths = sorted(glob.glob(os.path.join(MAILDIR, "*.eml")), key=lambda p: int(os.path.basename(p)[:-4]))
        for path in reversed(paths[after:]):
            with open(path, "rb") as f:
                mail = email.message_from_binary_file(f, policy=email.policy.default)
            if mail["X-Envelope-To"] == address:
                body = mail.get_body(("plain",)).get_content()
                m = re.search(r"Votre code de vérification : (\d+)", body)
                if m:
                    return m.group(1)
        return None

    start = time.time()
    while time.time() - start < 30:
        code = find()
        if code:
            return code
        time.sleep(0.25)
    paths = sorted(glob.glob(os.path.join(MAILDIR, "*.eml")))
    log("mail folder holds", paths)
    for p in paths[-1:]:
        log(open(p, errors="replace").read()[:2000])
    fail(f"no code mailed to {address}")


def mail_count():
    return len(glob.glob(os.path.join(MAILDIR, "*.eml")))


def set_up(kind, label, address, wrong_code_first):
    log("set-up of", kind, address)
    click("Nouveau")
    start = page_of("Paramétrer l'envoi d'e-mails pour ce poste")
    click(kind, start)
    containing("Votre propre adresse" if kind == "Compte personnel" else "L'adresse partagée de l'école", start)
    type_into("Libellé", label, start)
    type_into("Adresse e-mail", address, start)
    shot(f"{label}-1-type", ["Paramétrer l'envoi d'e-mails pour ce poste", kind, address])
    before = mail_count()
    click("Suivant", start)
    code_page = page_of("Saisissez le code reçu")
    containing(f"Un code vient d'être envoyé à {address}", code_page)
    code = newest_code(address, before)
    if wrong_code_first:
        wrong = "%06d" % ((int(code) + 1) % 1000000)
        type_into("Code", wrong, code_page)
        click("Suivant", code_page)
        containing("Ce code n'est pas le bon", code_page)
        shot(f"{label}-2-wrong-code", ["Ce code n'est pas le bon"])
        # A new code so soon is refused by the daemon: the refusal must read as a sentence.
        click("Renvoyer le code", code_page)
        containing("Vous avez redemandé trop tôt", code_page)
    type_into("Code", code, code_page)
    shot(f"{label}-3-code", ["Saisissez le code reçu", "Renvoyer le code"])
    click("Suivant", code_page)
    secret = page_of("Choisissez une question secrète")
    type_into("Question secrète", "Nom du premier directeur ?", secret)
    type_into("Réponse", "Monsieur Germain", secret)
    type_into("Réponse (à nouveau)", "Monsieur Germaine", secret)
    # Nothing reaches the daemon here, so a click GTK dropped may safely be given again.
    for _ in range(3):
        click("Suivant", secret)
        try_until = time.time() + 5
        while time.time() < try_until and absent("Les deux réponses ne sont pas identiques", secret):
            time.sleep(0.25)
        if not absent("Les deux réponses ne sont pas identiques", secret):
            break
    containing("Les deux réponses ne sont pas identiques", secret)
    type_into("Réponse (à nouveau)", "Monsieur Germain", secret)
    shot(f"{label}-4-secret", ["Choisissez une question secrète"])
    click("Suivant", secret)
    done = page_of("Le compte est prêt")
    containing("cleRecuperation.crbee", done)
    tick("Je conserverai le fichier cleRecuperation.crbee en lieu sûr", done)
    if kind == "Compte établissement":
        tick(os.environ["STAFF"], done)
    shot(f"{label}-5-done", ["Le compte est prêt", "Conservez le fichier"])
    click("Valider", done)
    wait(
        f"{label} ready in the accounts list",
        lambda: not absent(f"{label} — {address} — Prêt à envoyer"),
    )


def choose_file(opener, title, path, accept_label):
    """Types `path` into the file chooser that `opener` opens and accepts it."""
    opener.doActionNamed("click")
    chooser = wait(
        "the file chooser",
        lambda: next((w for w in app().children if w.name == title), None),
    )
    # A path typed into a GTK file chooser opens its location field.
    time.sleep(1)
    rawinput.typeText(path)
    wait(
        "the path in the chooser's location field",
        lambda: any(text_of(n) == path for n in nodes(chooser, lambda n: n.roleName == "text")),
    )
    accept = wait(
        f"the chooser's {accept_label} button",
        lambda: next(
            iter(nodes(chooser, lambda n: n.roleName == "push button" and n.name.split(" ")[0] == accept_label)),
            None,
        ),
    )
    accept.doActionNamed("click")


def merge():
    log("a merge to two families, one of them refused")
    click("Diffusion aux familles")
    page = page_of("Diffusion aux familles")
    # GTK 4.8 shows toggle buttons as push buttons on the accessibility bus.
    click("Bilan périodique (PDF joint)", page)
    choose_file(named("Ouvrir le fichier CSV…", "push button", page), "Ouvrir le fichier CSV", os.environ["CSV"], "Ouvrir")
    containing("Familles qui recevront le message : 1. Écartées : 1.", page)
    containing("L'adresse e-mail pas-une-adresse n'est pas valide.", page)
    containing("Bilan premier trimestre de Léa", page)
    shot("merge-preview", ["Diffusion aux familles", "Familles écartées", "pas-une-adresse"])
    click("Envoyer aux familles", page)
    containing("Terminé : 1 sur 1 distribués", page)
    shot("merge-sent", ["Diffusion aux familles", "Terminé"])
    click("Les voir dans « Suivi des envois »", page)
    follow = page_of("Suivi des envois")
    containing("À : famille.petit@example.org — Distribué", follow)
    shot("merge-follow-up", ["Suivi des envois", "famille.petit@example.org"])


def main():
    subprocess.Popen([os.environ["APP"]])
    named("Comptes de messagerie de ce poste", "label")
    containing("Aucun compte pour l'instant")
    shot("accounts-empty", ["Comptes de messagerie de ce poste", "Nouveau"])

    set_up("Compte établissement", "Secrétariat", "secretariat@ecole.fr", False)
    set_up("Compte personnel", "Mme Martin", "martin@ecole.fr", True)
    shot("accounts-ready", ["Secrétariat", "Mme Martin", "Prêt à envoyer"])

    log("the secretariat's address by default")
    click("Détails de Secrétariat")
    details = wait(
        "the account's details",
        lambda: next((w for w in app().children if w.name == "Secrétariat"), None),
    )
    click("Utiliser par défaut pour moi", details)
    containing("Par défaut pour moi")

    log("send with a PDF")
    click("Écrire")
    write = page_of("Écrire un message")
    type_into("À", "famille.durand@example.org", write)
    type_into("Objet", "Bulletin du premier trimestre", write)
    named("Message", "text", write).text = "Bonjour, voici le bulletin de Léa."
    choose_file(named("Joindre un fichier…", "push button", write), "Joindre un fichier", os.environ["PDF"], "Joindre")
    containing("bulletin.pdf", write)
    shot("write", ["Écrire un message", "Bulletin du premier trimestre", "bulletin.pdf"])
    click("Envoyer", write)
    follow = page_of("Suivi des envois")
    containing("À : famille.durand@example.org — Distribué", follow)
    shot("follow-up", ["Suivi des envois", "famille.durand@example.org"])
    # Before the archive's reader window covers the main one.
    merge()
    log("the relay's settings, as the daemon reports them")
    click("Relais")
    relay = page_of("Relais")
    containing("127.0.0.1", relay)
    click("Tester", relay)
    containing("Le serveur de messagerie a répondu", relay)
    shot("relay", ["Relais", "Serveur de messagerie", "127.0.0.1", "Le serveur de messagerie a répondu"])
    log("read it back from the encrypted archive")
    click("Messages envoyés")
    sent = page_of("Messages envoyés")
    type_into("Réponse", "Monsieur Germain", sent)
    click("Ouvrir", sent)
    click("Lire — Bulletin du premier trimestre", sent)
    reader = wait(
        "the message read back",
        lambda: next((w for w in app().children if w.name == "Bulletin du premier trimestre"), None),
    )
    wait(
        "the message's text",
        lambda: any("bulletin de L" in text_of(n) for n in nodes(reader, lambda n: n.roleName == "text")),
    )
    shot("archive", ["Bulletin du premier trimestre"])
    log("all steps seen")


main()
