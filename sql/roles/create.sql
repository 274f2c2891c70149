-- A group role: no login of its own; people and services log in as roles that are its members.
CREATE ROLE {role} NOLOGIN
