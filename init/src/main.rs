//! `seamless-init`: early init stage that restores preserved processes and hands over to the real init.

fn main() {
    seamless_init::boot::run()
}
