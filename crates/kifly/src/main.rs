/// mimalloc instead of the system allocator: request handling allocates many small, short-lived
/// buffers (JSON, headers), where it is markedly cheaper than glibc malloc under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kifly::cli::main()
}
