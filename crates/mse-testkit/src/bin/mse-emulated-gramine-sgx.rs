//! The emulated Gramine SGX loader: see `mse_testkit::tee::loader`.

fn main() -> std::process::ExitCode {
    mse_testkit::tee::loader::main()
}
