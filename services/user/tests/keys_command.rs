//! The operator's `user-service keys` command, run as an operator runs it: the binary, with
//! `JWT_KEY_DIR` naming the key directory.

use std::process::Command;

fn keys(directory: Option<&std::path::Path>, arguments: &[&str]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_user-service"));
    command.env_clear().arg("keys").args(arguments);
    if let Some(directory) = directory {
        command.env("JWT_KEY_DIR", directory);
    }
    let output = command.output().expect("the binary runs");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), said)
}

#[test]
fn keys_rotate_adds_a_pending_key_that_keys_list_shows_and_keys_remove_withdraws() {
    let directory = std::env::temp_dir().join(format!("user-service-keys-command-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&directory).unwrap();

    let (rotated, said) = keys(Some(&directory), &["rotate", "--activate-in", "3600"]);
    assert!(rotated, "{said}");
    // The answer is the command's last line; log lines come before it.
    let answer = said.lines().find(|line| line.starts_with("new key ")).unwrap_or_else(|| panic!("{said}"));
    let key_id = answer.split_whitespace().nth(2).unwrap_or_else(|| panic!("{answer}"));
    let files: Vec<_> = std::fs::read_dir(&directory).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "{files:?}");

    let (listed, list) = keys(Some(&directory), &["list"]);
    assert!(listed, "{list}");
    assert!(list.contains(key_id) && list.trim_end().ends_with("pending"), "{list}");

    let (removed, said) = keys(Some(&directory), &["remove", key_id]);
    assert!(removed, "{said}");
    assert_eq!(std::fs::read_dir(&directory).unwrap().count(), 0);
    std::fs::remove_dir_all(&directory).unwrap();
}

#[test]
fn the_keys_commands_need_a_key_directory_and_their_usage() {
    let (ran, said) = keys(None, &["list"]);
    assert!(!ran, "{said}");
    assert!(said.contains("the keys commands work on a key directory: set JWT_KEY_DIR"), "{said}");

    let directory = std::env::temp_dir();
    let (ran, said) = keys(Some(&directory), &["rotate", "now"]);
    assert!(!ran, "{said}");
    assert!(said.contains("usage: user-service keys rotate"), "{said}");
}
