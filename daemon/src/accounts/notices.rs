//! The e-mails postecole writes itself, in French: the verification code and the confirmation
//! that an address is ready. They say who asked, from which PC, and what to do if it was not you.

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MessageBuilder, MultiPart, SinglePart};

use crate::config::Config;
use crate::model::Account;

/// Minutes a code stays valid, as written in the mail.
pub const CODE_LIFETIME_MINUTES: u64 = 15;

#[derive(Debug, thiserror::Error)]
#[error("cannot build the e-mail: {0}")]
pub struct Error(String);

/// From and Reply-To for mail sent in the account's name. A relay that only accepts some
/// sender domains gets its own sender address, with the account's address as Reply-To, so that
/// DMARC does not discard the message.
/// `name` is the display name both carry.
fn sender(
    config: &Config,
    account: &Account,
    name: &str,
) -> Result<(Mailbox, Option<Mailbox>), Error> {
    let own: Mailbox = Mailbox::new(
        Some(name.to_owned()),
        account.address.parse().map_err(|e| Error(format!("{e}")))?,
    );
    match &config.relay {
        Some(relay) if !relay.allows_sender_domain(&account.address) => {
            let sender = relay.sender.as_deref().unwrap_or_default();
            let from = Mailbox::new(
                Some(name.to_owned()),
                sender.parse().map_err(|e| Error(format!("{e}")))?,
            );
            Ok((from, Some(own)))
        }
        _ => Ok((own, None)),
    }
}

/// A mail to the account's own address, in its name; `attachment` is (file name, content).
/// A message in the account's name: From (and Reply-To), subject, a stable Message-ID and our
/// User-Agent. Every mail postecole sends starts here.
pub fn builder(config: &Config, account: &Account, subject: &str) -> Result<MessageBuilder, Error> {
    named_builder(config, account, &account.label, subject)
}

/// As `builder`, with `name` as From's display name instead of the account's label.
fn named_builder(
    config: &Config,
    account: &Account,
    name: &str,
    subject: &str,
) -> Result<MessageBuilder, Error> {
    let (from, reply_to) = sender(config, account, name)?;
    let builder = Message::builder()
        .from(from)
        .subject(subject)
        .message_id(None)
        .user_agent(format!("postecole {}", env!("CARGO_PKG_VERSION")));
    Ok(match reply_to {
        Some(reply_to) => builder.reply_to(reply_to),
        None => builder,
    })
}

/// From's display name and the subject of the code e-mail. Fixed text: anyone may ask for a
/// code to any address, so nothing the asker typed may show before the mail is opened.
pub const CODE_SENDER_NAME: &str = "postecole";
pub const CODE_SUBJECT: &str = "Code de vérification postecole";

fn letter(
    config: &Config,
    account: &Account,
    name: &str,
    subject: &str,
    body: String,
    attachment: Option<(&str, &str)>,
) -> Result<Message, Error> {
    let to = Mailbox::new(
        None,
        account.address.parse().map_err(|e| Error(format!("{e}")))?,
    );
    let builder = named_builder(config, account, name, subject)?.to(to);
    let built = match attachment {
        None => builder.singlepart(SinglePart::plain(body)),
        Some((name, content)) => builder.multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(body))
                .singlepart(Attachment::new(name.to_owned()).body(
                    content.as_bytes().to_vec(),
                    ContentType::parse("application/octet-stream").expect("a valid content type"),
                )),
        ),
    };
    built.map_err(|e| Error(e.to_string()))
}

pub fn verification(
    config: &Config,
    account: &Account,
    code: &str,
    host: &str,
) -> Result<Message, Error> {
    let body = format!(
        "Bonjour,\n\
         \n\
         Une demande a été faite sur le poste « {host} » pour envoyer des e-mails\n\
         depuis l'adresse {address} sous le nom « {label} ».\n\
         \n\
         Votre code de vérification : {code}\n\
         \n\
         Ce code est valable {minutes} minutes et ne sert qu'une fois. Saisissez-le\n\
         dans l'écran de configuration, ou tapez sur ce poste :\n\
         \n    mailctl account verify {id} {code}\n\
         \n\
         Vous n'êtes pas à l'origine de cette demande ? Ne communiquez ce code à\n\
         personne et ignorez ce message : sans lui, votre adresse ne pourra pas être\n\
         utilisée depuis ce poste.\n\
         \n\
         -- \n\
         postecole, service d'envoi d'e-mails du poste {host}\n",
        host = host,
        address = account.address,
        label = account.label,
        code = code,
        minutes = CODE_LIFETIME_MINUTES,
        id = account.id,
    );
    letter(config, account, CODE_SENDER_NAME, CODE_SUBJECT, body, None)
}

/// The confirmation that the address is ready, carrying the recovery key file.
pub fn confirmation(
    config: &Config,
    account: &Account,
    host: &str,
    recovery_file: &str,
) -> Result<Message, Error> {
    let body = format!(
        "Bonjour,\n\
         \n\
         L'adresse {address} est prête : le poste « {host} » peut désormais\n\
         envoyer des e-mails en son nom, sous le nom « {label} ».\n\
         \n\
         Elle est protégée par une question secrète. Les e-mails envoyés depuis\n\
         ce compte sont archivés chiffrés sur le poste : pour les relire, il faut\n\
         la réponse à cette question.\n\
         \n\
         {help}\
         Vous n'êtes pas à l'origine de cette configuration ? Prévenez sans tarder\n\
         la personne qui administre ce poste.\n\
         \n\
         -- \n\
         postecole, service d'envoi d'e-mails du poste {host}\n",
        address = account.address,
        host = host,
        label = account.label,
        help = recovery_help(account),
    );
    letter(
        config,
        account,
        &account.label,
        &format!("Adresse configurée : {}", account.label),
        body,
        Some((crate::archive::RECOVERY_FILE_NAME, recovery_file)),
    )
}

/// A new recovery key file, asked for with the answer; the one sent before no longer works.
pub fn new_recovery_key(
    config: &Config,
    account: &Account,
    host: &str,
    recovery_file: &str,
) -> Result<Message, Error> {
    let body = format!(
        "Bonjour,\n\
         \n\
         Une nouvelle clé de récupération a été demandée pour l'adresse {address}\n\
         sur le poste « {host} ». Le fichier {file} reçu auparavant ne\n\
         fonctionne plus : supprimez-le et gardez celui-ci.\n\
         \n\
         {help}\
         Vous n'êtes pas à l'origine de cette demande ? Prévenez sans tarder\n\
         la personne qui administre ce poste.\n\
         \n\
         -- \n\
         postecole, service d'envoi d'e-mails du poste {host}\n",
        address = account.address,
        host = host,
        file = crate::archive::RECOVERY_FILE_NAME,
        help = recovery_help(account),
    );
    letter(
        config,
        account,
        &account.label,
        &format!("Nouvelle clé de récupération : {}", account.label),
        body,
        Some((crate::archive::RECOVERY_FILE_NAME, recovery_file)),
    )
}

/// What the recovery file is for and what to do with it, in both mails that carry one.
fn recovery_help(account: &Account) -> String {
    format!(
        "Le fichier joint, {file}, est le seul moyen d'accéder aux\n\
         e-mails envoyés depuis ce compte en cas de problème (réponse oubliée).\n\
         Enregistrez-le en lieu sûr, hors de ce poste. Il n'en existe aucune autre\n\
         copie : sans lui et sans la réponse, ces e-mails sont illisibles.\n\
         \n\
         Réponse oubliée ? Pour relire ces e-mails : application « Messagerie de ce\n\
         poste », page « Messages envoyés », « Ouvrir avec le fichier de récupération… ».\n\
         Pour choisir une nouvelle question et réponse, dans un terminal :\n\
         mailctl account recover {id} --key {file} --question \"…\"\n\
         \n",
        id = account.id,
        file = crate::archive::RECOVERY_FILE_NAME,
    )
}

/// This PC's name, as the mails show it to the person who receives the code.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "inconnu".into())
}
