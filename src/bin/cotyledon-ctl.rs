//! `cotyledon-ctl`: talk to a running master over its control socket
//! (see [`cotyledon::ctl`]).

fn main() {
    std::process::exit(cotyledon::ctl::main(std::env::args().skip(1).collect()))
}
