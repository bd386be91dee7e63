//! Users' groups for `userGroup` selectors, from a file in the format of
//! Trino's file group provider: one group per line, `group:user1,user2`.
//! Blank lines are skipped; any other line without a `:` is an error that
//! names its line.

use std::collections::BTreeMap;

/// user -> the groups that list them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserGroups(BTreeMap<String, Vec<String>>);

impl UserGroups {
    pub fn parse(text: &str) -> Result<UserGroups, String> {
        let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some((group, users)) = line.split_once(':') else {
                return Err(format!("line {}: expected group:user1,user2", i + 1));
            };
            let group = group.trim();
            if group.is_empty() {
                return Err(format!("line {}: the group name is empty", i + 1));
            }
            for user in users.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                let groups = by_user.entry(user.to_string()).or_default();
                if !groups.iter().any(|g| g == group) {
                    groups.push(group.to_string());
                }
            }
        }
        Ok(UserGroups(by_user))
    }

    /// The groups that list `user` (none for a user no line lists).
    pub fn of(&self, user: &str) -> Vec<String> {
        self.0.get(user).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_trinos_group_file_format() {
        let g = UserGroups::parse("admins:alice,bob\n\nanalysts: bob , carol\n").unwrap();
        assert_eq!(g.of("bob"), ["admins", "analysts"]);
        assert_eq!(g.of("carol"), ["analysts"]);
        assert!(g.of("dave").is_empty());
        assert_eq!(
            UserGroups::parse("admins:alice\nbroken line\n").unwrap_err(),
            "line 2: expected group:user1,user2"
        );
    }
}
