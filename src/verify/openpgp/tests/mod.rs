//! Tests of the OpenPGP module against keys and signatures made by real GnuPG (`gpg`), and
//! against a real Ubuntu release signature.

mod gpg;
mod keys;
mod store;
mod verify;
