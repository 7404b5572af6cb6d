fn main() -> std::process::ExitCode {
    kifly::cli::main()
}
