fn main() -> gtk::glib::ExitCode {
    postecole_desktop::run(std::env::args().collect())
}
