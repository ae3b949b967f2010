# Installs postecole where Debian expects it; `make deb` wraps the same tree into a package.
#   make install DESTDIR=/tmp/root     (PROFILE=debug to use a debug build)
#   make deb                            -> target/postecole_<version>_<arch>.deb
#   make deb-desktop                    -> target/desktop/postecole-desktop_<version>_<arch>.deb
#   make deb-sendmail                   -> target/sendmail/postecole-sendmail_<version>_<arch>.deb
#   make install SENDMAIL=1             also installs /usr/sbin/sendmail (see install-sendmail)
# The desktop application is its own package, so that the daemon's never pulls in GTK; the
# sendmail door too, so that taking the place of the PC's mail transport agent is a choice.

PROFILE ?= release
DESTDIR ?=
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
ARCH := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
BIN := target/$(PROFILE)
GEN := target/generated
DEBROOT := target/deb/postecole
DESKROOT := target/deb/postecole-desktop
SENDROOT := target/deb/postecole-sendmail
SENDMAIL ?=

# A debug build reuses what `cargo build --workspace` (the tests) already compiled.
CARGO_FLAGS := $(if $(filter release,$(PROFILE)),--release -p postecoled -p mailctl,--workspace)
DESKTOP_FLAGS := $(if $(filter release,$(PROFILE)),--release,)
SENDMAIL_FLAGS := $(DESKTOP_FLAGS)

# xz takes minutes over a debug build's unstripped binaries: gzip for those, which stay local.
DEB_COMPRESS := $(if $(filter release,$(PROFILE)),,-Zgzip -z1)

.PHONY: build build-desktop build-sendmail install install-daemon install-desktop install-sendmail deb deb-desktop deb-sendmail clean-deb

LINGUAS := fr

build:
	cargo build $(CARGO_FLAGS)
	rm -rf $(GEN) && $(BIN)/mailctl generate-files $(GEN)
	# The catalogues (gettext's msgfmt), then the man pages in each language from them. C.UTF-8:
	# gettext ignores LANGUAGE under the plain C locale.
	for lang in $(LINGUAS); do \
		install -d $(GEN)/locale/$$lang/LC_MESSAGES && \
		msgfmt --check -o $(GEN)/locale/$$lang/LC_MESSAGES/postecole.mo po/$$lang.po && \
		LC_ALL=C.UTF-8 LANGUAGE=$$lang POSTECOLE_LOCALEDIR=$(GEN)/locale \
			$(BIN)/mailctl generate-files $(GEN)/$$lang || exit 1; \
	done

build-desktop:
	cargo build $(DESKTOP_FLAGS) -p postecole-desktop

# Linked statically: scripts start one process per message, and loading libc, libm and
# libgcc_s and binding their symbols took about a third of the door's own processor time. It
# makes no user look-up (NSS), which static glibc could not do.
build-sendmail:
	cargo rustc $(SENDMAIL_FLAGS) -p postecole-sendmail --bin postecole-sendmail -- -C target-feature=+crt-static

# A plain `make install` leaves /usr/sbin/sendmail alone: it belongs to whichever mail
# transport agent the PC has, and only the package manager should replace it.
install: install-daemon install-desktop $(if $(filter 1 yes,$(SENDMAIL)),install-sendmail)

install-daemon: build
	install -Dm755 $(BIN)/postecoled $(DESTDIR)/usr/libexec/postecoled
	install -Dm755 $(BIN)/mailctl $(DESTDIR)/usr/bin/mailctl
	install -Dm644 systemd/postecoled.service $(DESTDIR)/usr/lib/systemd/system/postecoled.service
	install -Dm644 systemd/postecole.sysusers $(DESTDIR)/usr/lib/sysusers.d/postecole.conf
	install -Dm644 systemd/postecole.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/postecole.conf
	install -Dm644 systemd/org.postecole.Mail1.conf $(DESTDIR)/usr/share/dbus-1/system.d/org.postecole.Mail1.conf
	install -Dm644 systemd/org.postecole.Mail1.service $(DESTDIR)/usr/share/dbus-1/system-services/org.postecole.Mail1.service
	install -Dm644 systemd/org.postecole.Mail1.policy $(DESTDIR)/usr/share/polkit-1/actions/org.postecole.Mail1.policy
	install -Dm644 dbus/org.postecole.Mail1.xml $(DESTDIR)/usr/share/dbus-1/interfaces/org.postecole.Mail1.xml
	install -Dm644 doc/postecoled.toml.example $(DESTDIR)/usr/share/doc/postecole/examples/postecoled.toml
	install -Dm644 README.md $(DESTDIR)/usr/share/doc/postecole/README.md
	install -d $(DESTDIR)/usr/share/man/man1 $(DESTDIR)/usr/share/man/man8
	for page in $(GEN)/man/*.1; do gzip -9n < $$page > $(DESTDIR)/usr/share/man/man1/$$(basename $$page).gz; done
	gzip -9n < doc/postecoled.8 > $(DESTDIR)/usr/share/man/man8/postecoled.8.gz
	install -d $(DESTDIR)/usr/share/man/fr/man8 && gzip -9n < doc/fr/postecoled.8 > $(DESTDIR)/usr/share/man/fr/man8/postecoled.8.gz
	for lang in $(LINGUAS); do \
		install -Dm644 $(GEN)/locale/$$lang/LC_MESSAGES/postecole.mo $(DESTDIR)/usr/share/locale/$$lang/LC_MESSAGES/postecole.mo && \
		install -d $(DESTDIR)/usr/share/man/$$lang/man1 && \
		for page in $(GEN)/$$lang/man/*.1; do gzip -9n < $$page > $(DESTDIR)/usr/share/man/$$lang/man1/$$(basename $$page).gz; done || exit 1; \
	done
	install -Dm644 $(GEN)/completions/mailctl.bash $(DESTDIR)/usr/share/bash-completion/completions/mailctl
	install -Dm644 $(GEN)/completions/_mailctl $(DESTDIR)/usr/share/zsh/vendor-completions/_mailctl
	install -Dm644 $(GEN)/completions/mailctl.fish $(DESTDIR)/usr/share/fish/vendor_completions.d/mailctl.fish

install-desktop: build-desktop
	install -Dm755 $(BIN)/postecole-mail $(DESTDIR)/usr/bin/postecole-mail
	install -Dm644 desktop/data/org.postecole.Mail.desktop $(DESTDIR)/usr/share/applications/org.postecole.Mail.desktop
	install -Dm644 desktop/data/org.postecole.Mail.metainfo.xml $(DESTDIR)/usr/share/metainfo/org.postecole.Mail.metainfo.xml
	install -Dm644 desktop/data/org.postecole.Mail.svg $(DESTDIR)/usr/share/icons/hicolor/scalable/apps/org.postecole.Mail.svg

# /usr/lib/sendmail is where older programs look for it; msmtp-mta and nullmailer install both.
install-sendmail: build-sendmail
	install -Dm755 $(BIN)/postecole-sendmail $(DESTDIR)/usr/sbin/sendmail
	install -d $(DESTDIR)/usr/lib
	ln -sfn ../sbin/sendmail $(DESTDIR)/usr/lib/sendmail

deb: clean-deb
	$(MAKE) install-daemon DESTDIR=$(CURDIR)/$(DEBROOT) PROFILE=$(PROFILE)
	install -d $(DEBROOT)/DEBIAN
	sed -e 's/@VERSION@/$(VERSION)/' -e 's/@ARCH@/$(ARCH)/' debian/control > $(DEBROOT)/DEBIAN/control
	install -m755 debian/postinst debian/prerm debian/postrm $(DEBROOT)/DEBIAN/
	sed -e '/^#SYSUSERS#$$/{r systemd/postecole.sysusers' -e 'd;}' debian/preinst > $(DEBROOT)/DEBIAN/preinst
	chmod 755 $(DEBROOT)/DEBIAN/preinst
	dpkg-deb --root-owner-group $(DEB_COMPRESS) --build $(DEBROOT) target/postecole_$(VERSION)_$(ARCH).deb

# Beside target/, not in it: target/*.deb is the daemon's package alone.
deb-desktop:
	rm -rf $(DESKROOT)
	$(MAKE) install-desktop DESTDIR=$(CURDIR)/$(DESKROOT) PROFILE=$(PROFILE)
	install -d $(DESKROOT)/DEBIAN target/desktop
	sed -e 's/@VERSION@/$(VERSION)/' -e 's/@ARCH@/$(ARCH)/' debian/control.desktop > $(DESKROOT)/DEBIAN/control
	dpkg-deb --root-owner-group $(DEB_COMPRESS) --build $(DESKROOT) target/desktop/postecole-desktop_$(VERSION)_$(ARCH).deb

# Beside target/ too: it takes the place of the mail transport agent (Provides, Conflicts and
# Replaces mail-transport-agent, as msmtp-mta and nullmailer do), so installing it is a choice.
deb-sendmail:
	rm -rf $(SENDROOT)
	$(MAKE) install-sendmail DESTDIR=$(CURDIR)/$(SENDROOT) PROFILE=$(PROFILE)
	install -d $(SENDROOT)/DEBIAN target/sendmail
	sed -e 's/@VERSION@/$(VERSION)/' -e 's/@ARCH@/$(ARCH)/' debian/control.sendmail > $(SENDROOT)/DEBIAN/control
	dpkg-deb --root-owner-group $(DEB_COMPRESS) --build $(SENDROOT) target/sendmail/postecole-sendmail_$(VERSION)_$(ARCH).deb

clean-deb:
	rm -rf target/deb
